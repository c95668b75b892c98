/** `answer_format` metrics (the format and parseable shares); served-endpoint cache keys. */
import { describe, expect, it } from 'vitest';
import { canonicalJson, endpointFingerprint, sha256Hex } from '../../../activities/inference/cache-key.js';
import { computeMetrics, type JudgmentRecord, type ScoredItem } from '../../../activities/evaluate/metrics.js';
import { SpecError } from '../../../spec/load.js';
import '../../../spec/builtin.js';
import { specFromObject } from '../../helpers/spec.js';

describe('format_rate', () => {
  const judgment = (itemKey: string, sample: number, chosenPosition: number | null, formatted: boolean, failed = false): JudgmentRecord => ({
    itemKey,
    category: 'c',
    subset: 's',
    view: 0,
    sample,
    permutation: [0, 1, 2, 3],
    chosenPosition,
    failed,
    formatted,
  });
  const items: ScoredItem[] = ['a', 'b'].map((itemKey) => ({ itemKey, best: 0 }));

  it('is the share of all samples in the trained format (a failed request is not), next to the parseable share', () => {
    const js = [
      judgment('a', 0, 1, true), // '<think>x</think><answer>B</answer>'
      judgment('a', 1, 1, false), // 'The answer is B.'
      judgment('b', 0, null, false), // 'I cannot tell.'
      judgment('b', 1, 2, true), // '<answer> C </answer>'
      judgment('b', 2, null, true, true), // a failed request
    ];
    const rows = computeMetrics(js, items, { seed: 1, bootstrap: 200 });
    const get = (m: string) => rows.find((r) => r.metric === m && r.scope === 'overall')!;
    expect(get('format_rate')).toMatchObject({ value: 2 / 5, n: 5, policy: '' });
    expect(get('parseable_rate')).toMatchObject({ value: 3 / 5, n: 5 });
    // Items resampled: the interval runs between the items' own shares (a: 1/2, b: 1/3).
    expect(get('format_rate').ciLow).toBeCloseTo(1 / 3, 12);
    expect(get('format_rate').ciHigh).toBeCloseTo(1 / 2, 12);
  });

  it('is absent when the stage has no answer format', () => {
    const js = [judgment('a', 0, 1, true)].map(({ formatted: _, ...j }) => j);
    expect(computeMetrics(js, items, { seed: 1, bootstrap: 0 }).some((r) => r.metric === 'format_rate')).toBe(false);
  });
});

describe('answer_format in a spec', () => {
  it('a bad answer_format is a spec error naming the field', async () => {
    const err = await specFromObject({
      name: 'fmt',
      endpoints: { j: { base_url: 'http://127.0.0.1:1/v1', model: 'm' } },
      datasets: { d: { path: '/nonexistent.jsonl' } },
      stages: [{ id: 'e', uses: 'evaluate', with: { dataset: 'd', judge: 'j', answer_format: '<answer>(' } }],
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpecError);
    expect(String((err as Error).message)).toContain('stages[0].with.answer_format: not a regular expression');
  });
});

describe('served endpoint cache keys', () => {
  it('key on the model identity, not the URL; plain endpoints keep their fingerprint', () => {
    const served = (port: number) => ({
      base_url: `http://127.0.0.1:${port}/v1`,
      model: '/m',
      revision: '',
      served: { runId: 'r', stageId: 's', identity: 'checkpoint:abc' },
    });
    expect(endpointFingerprint(served(1000))).toBe(endpointFingerprint(served(2000)));
    expect(endpointFingerprint({ ...served(1000), served: { runId: 'r2', stageId: 's2', identity: 'checkpoint:abc' } })).toBe(
      endpointFingerprint(served(1000)),
    );
    expect(endpointFingerprint({ ...served(1000), served: { runId: 'r', stageId: 's', identity: 'checkpoint:def' } })).not.toBe(
      endpointFingerprint(served(1000)),
    );
    // Unchanged for spec endpoints (existing cache entries stay valid): the definition over URL, model, revision.
    expect(endpointFingerprint({ base_url: 'http://h:1/v1/', model: 'm', revision: '' })).toBe(
      sha256Hex(canonicalJson({ base_url: 'http://h:1/v1', model: 'm', revision: '' })).slice(0, 32),
    );
  });
});
