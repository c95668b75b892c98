/** `answer_format` metrics: Wilson intervals and the format / parseable shares; served-endpoint cache keys. */
import { describe, expect, it } from 'vitest';
import { canonicalJson, endpointFingerprint, sha256Hex } from '../../../activities/inference/cache-key.js';
import { formatMetrics, wilsonInterval } from '../../../activities/evaluate/metrics.js';
import { SpecError } from '../../../spec/load.js';
import '../../../spec/builtin.js';
import { specFromObject } from '../../helpers/spec.js';

describe('wilsonInterval', () => {
  it('matches the closed form at known points', () => {
    // 8 of 10: the textbook 95% Wilson interval is [0.4902, 0.9433].
    const a = wilsonInterval(8, 10);
    expect(a.low).toBeCloseTo(0.4902, 4);
    expect(a.high).toBeCloseTo(0.9433, 4);
    // 0 of 20 stays inside [0, 1] and is not degenerate.
    const b = wilsonInterval(0, 20);
    expect(b.low).toBe(0);
    expect(b.high).toBeCloseTo(0.1611, 4);
    expect(() => wilsonInterval(0, 0)).toThrow(RangeError);
  });
});

describe('formatMetrics', () => {
  it('counts outputs in the trained format and parsed outputs over the same samples', () => {
    const samples = [
      { parsed: true, content: '<think>x</think><answer>B</answer>' },
      { parsed: true, content: 'The answer is B.' },
      { parsed: false, content: 'I cannot tell.' },
      { parsed: true, content: '<answer> C </answer>' },
    ];
    const rows = formatMetrics(samples, '<answer>\\s*[A-D]\\s*</answer>');
    const get = (m: string) => rows.find((r) => r.metric === m)!;
    expect(get('format_rate')).toMatchObject({ value: 0.5, n: 4, scope: 'overall', policy: '' });
    expect(get('parseable_rate')).toMatchObject({ value: 0.75, n: 4 });
    expect(get('format_rate').ciLow).toBeCloseTo(wilsonInterval(2, 4).low, 12);
    expect(formatMetrics([], 'x')).toEqual([]);
  });

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
