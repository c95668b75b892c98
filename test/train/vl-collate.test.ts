/**
 * The multimodal path stays honest while the CI model is a text model: the fixture's real PNGs go
 * through sft.py's row conversion and TRL's vision-language collator into a tiny Qwen2.5-VL built
 * from a config (random weights), which takes two optimizer steps (test/train/tiny_vl.py).
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/env.js';
import { PYTHON, requireSmolLM2, SFT_FIXTURE, SMOLLM2 } from './helpers.js';

describe('tiny Qwen2.5-VL on the sft-set export', () => {
  it('collates real images into pixel_values and image tokens, loss on the answer only, and learns', () => {
    requireSmolLM2();
    const out = execFileSync(PYTHON, [join(REPO, 'test', 'train', 'tiny_vl.py'), SMOLLM2, SFT_FIXTURE], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 600_000,
    });
    const r = JSON.parse(out.trim().split('\n').at(-1)!) as {
      rows: number;
      images: number;
      pixel_values: number[];
      grid: number[][];
      patches: number;
      image_tokens: number;
      merge: number;
      labelled_image_tokens: number;
      labelled_tokens: number;
      losses: number[];
      vision_params_with_grad: number;
      vision_params: number;
    };
    // 4 rows, one 64×64 PNG each, resized to 56×56: a 4×4 grid of 14-px patches per image.
    expect(r.rows).toBe(4);
    expect(r.images).toBe(4);
    expect(r.grid).toEqual([
      [1, 4, 4],
      [1, 4, 4],
      [1, 4, 4],
      [1, 4, 4],
    ]);
    // Every patch is a row of pixel_values (3 channels × 2 frames × 14 × 14 values).
    expect(r.pixel_values).toEqual([r.patches, 3 * 2 * 14 * 14]);
    // The prompt holds one image token per merged 2×2 patch group.
    expect(r.image_tokens).toBe(r.patches / (r.merge * r.merge));
    expect(r.labelled_image_tokens).toBe(0);
    expect(r.labelled_tokens).toBeGreaterThan(0);
    // The vision tower gets gradients from the text loss, and a step lowers the loss.
    expect(r.vision_params_with_grad).toBe(r.vision_params);
    expect(r.losses[1]).toBeLessThan(r.losses[0]!);
  });
});
