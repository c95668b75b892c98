/**
 * The MM-Vet format and the MM-Vet-style LLM grader through the `sweep` stage: a fixture of seven
 * questions (made here from easy-vqa images; MM-Vet itself is never shipped) whose predictions
 * have known scores, including `<AND>` / `<OR>` answers, one grader reply unreadable at
 * temperature 0 only and one never readable. The per-capability numbers must come out exactly.
 */
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSource } from '../../activities/datasets/index.js';
import { locateEasyVqa } from '../../activities/datasets/qa.js';
import { launchRun } from '../../cli/launch.js';
import type { DbHandle } from '../../db/client.js';
import type { SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { uniqueName } from '../helpers/env.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { specFromObject } from '../helpers/spec.js';

/** id, capabilities, question, ground truth, the policy's prediction, the score a grader following the rule gives it. */
const FIXTURE: [string, string[], string, string, string, number][] = [
  ['v1_0', ['rec'], 'What animal is shown?', 'cat', 'cat', 1],
  ['v1_1', ['rec', 'ocr'], 'What does the sign say?', 'stop <OR> halt', 'halt', 1],
  ['v1_2', ['ocr'], 'What three words are on the board?', 'exit <AND> 24 <AND> north', 'exit 24', 0.7],
  ['v1_3', ['math'], 'What is 5 + 7?', '12', '13', 0],
  ['v1_4', ['math', 'spat'], 'Where are the 3 dots?', 'left <AND> 3', '3 on the left SIM_GREEDY_UNPARSEABLE', 1],
  ['v1_5', ['know'], 'What is the capital of France?', 'paris', 'paris SIM_UNPARSEABLE', 0],
  ['v1_6', ['know', 'gen'], 'What colour is a ripe strawberry?', 'red <OR> crimson', 'blue', 0],
];

let db: DbHandle;
let sim: SimHandle;
let client: Client;
let stack: TestStack;
let dir: string;
const TQ = uniqueName('mmvet');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'jf-mmvet-'));
  mkdirSync(join(dir, 'images'));
  const easy = join(locateEasyVqa(), 'test', 'images');
  const records: Record<string, unknown> = {};
  const predictions: string[] = [];
  FIXTURE.forEach(([id, capability, question, answer, prediction], i) => {
    copyFileSync(join(easy, `${i}.png`), join(dir, 'images', `${id}.png`));
    records[id] = { imagename: `${id}.png`, capability, question, answer };
    predictions.push(JSON.stringify({ question, answer: prediction, image: `images/${id}.png` }));
  });
  writeFileSync(join(dir, 'mm-vet.json'), JSON.stringify(records, null, 2));
  writeFileSync(join(dir, 'predictions.jsonl'), predictions.join('\n') + '\n');
  stack = await startTestStack(TQ, {
    seed: 2,
    models: {
      policy: { behaviour: 'policy', accuracy: 1, answers: join(dir, 'predictions.jsonl') },
      grader: { behaviour: 'grader' },
    },
  });
  ({ db, sim, client } = stack);
});
afterAll(() => stack?.close());

describe('MM-Vet format and grader', () => {
  it('loads {id: {imagename, capability, question, answer}} with capabilities in meta, format inferred', async () => {
    const loaded = await loadSource({ path: join(dir, 'mm-vet.json') });
    if (loaded.kind !== 'qa-items') throw new Error(`expected qa-items, got ${loaded.kind}`);
    expect(loaded.format).toBe('mm-vet');
    expect(loaded.items.map((i) => i.itemKey)).toEqual(FIXTURE.map((f) => f[0]));
    expect(loaded.items[2]!.answer).toBe('exit <AND> 24 <AND> north');
    expect(loaded.items[4]!.meta).toEqual({ capability: ['math', 'spat'] });
  });

  it('reproduces the per-capability scores, retries an unreadable grade warmer and gives 0.0 after 5 failures; num_runs repeats', async () => {
    const loaded = await specFromObject({
      name: uniqueName('mmvet'),
      seed: 1,
      endpoints: { policy: { base_url: sim.url, model: 'policy' }, grader: { base_url: sim.url, model: 'grader' } },
      datasets: { mmvet: { path: join(dir, 'mm-vet.json') } },
      stages: [
        {
          id: 'graded',
          uses: 'sweep',
          with: { items: 'mmvet', policy: 'policy', grader: { kind: 'llm', endpoint: 'grader' }, n: [1], resamples: 0, strategies: ['random'], bootstrap: 0 },
        },
        {
          id: 'graded-twice',
          uses: 'sweep',
          needs: ['graded'],
          with: {
            items: 'mmvet',
            policy: 'policy',
            grader: { kind: 'llm', endpoint: 'grader', num_runs: 2 },
            n: [1],
            resamples: 0,
            strategies: ['random'],
            bootstrap: 0,
          },
        },
      ],
    });
    const before = { ...sim.stats().byModel };
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
    await client.workflow.getHandle(runId).result();
    const sent = (m: string) => (sim.stats().byModel[m] ?? 0) - (before[m] ?? 0);

    // Expected, per capability: the mean of its questions' known scores ×100; total over all seven.
    const expected = new Map<string, number>();
    const caps = [...new Set(FIXTURE.flatMap((f) => f[1]))];
    for (const c of caps) {
      const own = FIXTURE.filter((f) => f[1].includes(c));
      expected.set(c, (100 * own.reduce((a, f) => a + f[5], 0)) / own.length);
    }
    expected.set('total', (100 * FIXTURE.reduce((a, f) => a + f[5], 0)) / FIXTURE.length);
    expect(expected.get('ocr')).toBeCloseTo(85, 9);
    expect(expected.get('total')).toBeCloseTo(370 / 7, 9);

    for (const stage of ['graded', 'graded-twice']) {
      const points = (
        await db.pool.query<{ capability: string; score: number; questions: number }>(
          `select p.capability, p.score, p.questions from curve_points p join artifacts a on a.id = p.artifact_id where a.run_id = $1 and a.stage_id = $2 and p.strategy = 'random' and p.n = 1`,
          [runId, stage],
        )
      ).rows;
      expect(new Map(points.map((p) => [p.capability, p.score])).size).toBe(caps.length + 1);
      for (const p of points) expect(p.score, `${stage} ${p.capability}`).toBeCloseTo(expected.get(p.capability)!, 9);
      expect(points.find((p) => p.capability === 'know')!.questions).toBe(2);
    }

    const samples = (
      await db.pool.query<{ item_key: string; grade: number; grade_detail: { runs: (number | null)[]; attempts: number[] } }>(
        `select item_key, grade, grade_detail from sweep_samples where run_id = $1 and stage_id = 'graded'`,
        [runId],
      )
    ).rows;
    const detail = new Map(samples.map((r) => [r.item_key, r.grade_detail]));
    expect(detail.get('v1_4')).toEqual({ runs: [1], attempts: [2] });
    // Never readable: the run is recorded as null and scores 0.0.
    expect(detail.get('v1_5')).toEqual({ runs: [null], attempts: [5] });
    expect(samples.find((r) => r.item_key === 'v1_5')!.grade).toBe(0);
    expect(samples.find((r) => r.item_key === 'v1_2')!.grade).toBeCloseTo(0.7, 9);
    expect(detail.get('v1_0')).toEqual({ runs: [1], attempts: [1] });
    // Temperatures of v1_5's five attempts: 0, then raised by 0.5 each time.
    const temps = (
      await db.pool.query<{ t: number }>(
        `select (b.body->'params'->>'temperature')::float8 as t from inference_requests q join request_bodies b on b.hash = q.body_hash
         where q.run_id = $1 and q.stage_id = 'graded' and q.item_key like 'v1_5|g|%' order by q.item_key`,
        [runId],
      )
    ).rows.map((r) => r.t);
    expect(temps).toEqual([0, 0.5, 1, 1.5, 2]);

    // 7 first grades + 1 retry (v1_4) + 4 retries (v1_5) = 12; the second stage's run 0 is the same requests (cached), run 1 is 12 more.
    expect(sent('grader')).toBe(24);
    expect(sent('policy')).toBe(FIXTURE.length);
  }, 300_000);
});
