/**
 * The distill → train seam: a distill-shaped sft-set (rows in `sft_rows`, one image, a train and a
 * validation split) goes through `exportSftSet`, which writes distill's own `trl` export of the
 * train split; trainers/sft.py's loader reads the file and turns each row into a prompt/completion.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeImage } from '../../activities/inference/store.js';
import { SftSetError, exportSftSet } from '../../activities/train/sft-set.js';
import type { DbHandle } from '../../db/client.js';
import { REPO, openTestDb, uniqueName } from '../helpers/env.js';
import { solidPng } from '../helpers/png.js';

let db: DbHandle;
let sftId: number;
let unsealedId: number;

const CAPTION = 'A red square in the middle of a white image.';

const onePixelPng = (): Buffer => solidPng(1, [10, 200, 30]);

beforeAll(async () => {
  db = await openTestDb();
  const image = await storeImage(db.db, onePixelPng(), 'image/png');
  const run = uniqueName('sft-seam');
  const open = async (sealed: boolean) =>
    (
      await db.pool.query<{ id: number }>(
        `insert into artifacts (kind, name, run_id, stage_id, rows, content_hash, sealed_at) values ('sft-set', $1, $2, 'distill', 3, 'x', ${sealed ? 'now()' : 'null'}) returning id`,
        [sealed ? 'sft' : 'open', run],
      )
    ).rows[0]!.id;
  sftId = await open(true);
  unsealedId = await open(false);
  const rows = [
    { key: 'a', image, split: 'train', answer: 'A' },
    { key: 'b', image: null, split: 'train', answer: 'B' },
    { key: 'c', image, split: 'validation', answer: 'A' },
  ];
  for (const [idx, r] of rows.entries()) {
    await db.pool.query(
      `insert into sft_rows (artifact_id, idx, item_key, image_hash, prompt, response, answer, split, trace_hash, attempt, source_artifact_id)
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, 0)`,
      [sftId, idx, r.key, r.image, `Question ${r.key}? A or B`, `<think>reason ${r.key}</think><answer>${r.answer}</answer>`, r.answer, r.split, `h-${r.key}`],
    );
  } // Distill's caption of item a's image: the request its attempt 0 made, answered from the cache.
  await db.pool.query("insert into request_bodies (hash, body) values ($1, '{}')", [`body-${run}`]);
  await db.pool.query("insert into inference_cache (key, endpoint_fingerprint, model, content) values ($1, 'f', 'captioner', $2)", [`key-${run}`, CAPTION]);
  const caption = (
    await db.pool.query<{ id: number }>(
      "insert into inference_requests (run_id, stage_id, item_key, endpoint, body_hash, cache_key) values ($1, 'distill', 'a|caption', 'captioner', $2, $3) returning id",
      [run, `body-${run}`, `key-${run}`],
    )
  ).rows[0]!.id;
  await db.pool.query(
    `insert into distill_attempts (run_id, stage_id, item_key, attempt, status, hint, best, trace, requests)
     values ($1, 'distill', 'a', 0, 'accepted', false, 0, '', $2)`,
    [run, JSON.stringify({ caption, reason: caption, rewrites: {} })],
  );
});
afterAll(async () => {
  await db?.close();
});

describe('exportSftSet on a distill sft-set', () => {
  it("writes distill's trl export of the train split, which the trainer's loader reads", async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'jf-sft-')), 'data', 'sft.jsonl');
    expect(await exportSftSet(db.db, sftId, out)).toEqual({ rows: 2 });
    const lines = readFileSync(out, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { messages: { role: string }[]; images: string[]; captions?: string[] });
    expect(lines).toHaveLength(2);
    expect(lines[0]!.images).toHaveLength(1);
    expect(lines[0]!.captions).toEqual([CAPTION]);
    expect(lines[1]!.images).toEqual([]);
    expect(lines[1]!.captions).toBeUndefined();
    const py = `
import json, sys
sys.path.insert(0, ${JSON.stringify(join(REPO, 'trainers'))})
import sft
rows = sft.load_rows(${JSON.stringify(out)})
print(json.dumps([sft.to_example(r, False) for r in rows]))`;
    const examples = JSON.parse(execFileSync('python3', ['-c', py], { encoding: 'utf8' })) as {
      prompt: { role: string; content: string }[];
      completion: { role: string; content: string }[];
    }[];
    // A text model reads the caption where the image was, as distill's reasoner did.
    expect(examples.map((e) => e.prompt[0]!.content)).toEqual([`${CAPTION}\n\nQuestion a? A or B`, 'Question b? A or B']);
    expect(examples.map((e) => e.completion[0]!.content)).toEqual(['<think>reason a</think><answer>A</answer>', '<think>reason b</think><answer>B</answer>']);
  });

  it('refuses an unsealed set and a set of another kind, naming the artifact', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'jf-sft-')), 'x.jsonl');
    await expect(exportSftSet(db.db, unsealedId, out)).rejects.toThrow(new SftSetError(`sft-set ${unsealedId} is not sealed (its stage has not finished)`));
    const other = (
      await db.pool.query<{ id: number }>(
        "insert into artifacts (kind, name, run_id, stage_id, rows, content_hash, sealed_at) values ('rl-set', 'rl', $1, 'distill', 0, 'x', now()) returning id",
        [uniqueName('sft-seam-rl')],
      )
    ).rows[0]!.id;
    await expect(exportSftSet(db.db, other, out)).rejects.toThrow(`artifact ${other} is rl-set; train reads an sft-set`);
  });
});
