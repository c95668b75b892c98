/**
 * The evaluate stage on the real VL-RewardBench records, with simulated judges over HTTP,
 * results in Postgres: the numbers a paper would report.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { and, eq } from 'drizzle-orm';
import type { Client } from '@temporalio/client';
import { launchRun } from '../../cli/launch.js';
import { judgments, metrics } from '../../db/schema/index.js';
import type { SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { REPO, uniqueName } from '../helpers/env.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { specFromObject } from '../helpers/spec.js';
import type { DbHandle } from '../../db/client.js';

const DATA = `${REPO}/data/vl-rewardbench/data.jsonl`;
const TQ = uniqueName('vlrb');
let db: DbHandle;
let sim: SimHandle;
let client: Client;
let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack(TQ, {
    seed: 11,
    truth: DATA,
    models: {
      'judge-80': { behaviour: 'judge', accuracy: 0.8 },
      'judge-first': { behaviour: 'judge', first_bias: 1 },
      'judge-messy': { behaviour: 'judge', accuracy: 0.8, unparseable_rate: 0.2, answer_format: 'boxed' },
    },
  });
  ({ db, sim, client } = stack);
});
afterAll(() => stack?.close());

type M = typeof metrics.$inferSelect;
const pick = (rows: M[], stage: string, metric: string, scope = 'overall', policy = '') =>
  rows.find((r) => r.stageId === stage && r.metric === metric && r.scope === scope && r.policy === policy);

describe('evaluate on VL-RewardBench', () => {
  let runId: string;
  let rows: M[];
  let loaded: Awaited<ReturnType<typeof specFromObject>>;

  beforeAll(async () => {
    const endpoint = (model: string) => ({ base_url: sim.url, model, concurrency: 64 });
    loaded = await specFromObject({
      name: uniqueName('vlrb'),
      seed: 5,
      endpoints: { 'judge-80': endpoint('judge-80'), 'judge-first': endpoint('judge-first'), 'judge-messy': endpoint('judge-messy') },
      datasets: { vlrb: { path: DATA } },
      stages: [
        { id: 'first-swap', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge-first', positions: 'swap', bootstrap: 200 } },
        { id: 'first-unswapped', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge-first', positions: 'none', bootstrap: 200 } },
        // One chunk of 2,500 requests: its judgments are parsed in two batches (2,000 + 500).
        { id: 'unbiased-swap', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge-80', positions: 'swap', bootstrap: 200, chunk_size: 2500 } },
        { id: 'messy-k3', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge-messy', positions: 'random', samples: 3, bootstrap: 200 } },
      ],
    });
    ({ runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ }));
    await client.workflow.getHandle(runId).result();
    rows = await db.db.select().from(metrics).where(eq(metrics.runId, runId));
  }, 300_000);

  it('an always-first judge scores 50% ± 3 in swap mode with a first-position rate near 100%, ~99.6% unswapped', () => {
    const acc = pick(rows, 'first-swap', 'accuracy', 'overall', 'excluded')!;
    expect(Math.abs(acc.value - 0.5)).toBeLessThanOrEqual(0.03);
    expect(pick(rows, 'first-swap', 'first_position_rate')!.value).toBeGreaterThan(0.99);
    expect(pick(rows, 'first-swap', 'position_consistency')!.value).toBeLessThan(0.01);
    expect(pick(rows, 'first-unswapped', 'accuracy', 'overall', 'excluded')!.value).toBeCloseTo(1245 / 1250, 3);
  });

  it('an unbiased 80%-accurate judge scores 80% ± 3, with a CI around it', () => {
    const acc = pick(rows, 'unbiased-swap', 'accuracy', 'overall', 'excluded')!;
    expect(Math.abs(acc.value - 0.8)).toBeLessThanOrEqual(0.03);
    expect(acc.ciLow!).toBeLessThan(acc.value);
    expect(acc.ciHigh!).toBeGreaterThan(acc.value);
    expect(acc.ciHigh! - acc.ciLow!).toBeLessThan(0.06);
    expect(Math.abs(pick(rows, 'unbiased-swap', 'first_position_rate')!.value - 0.5)).toBeLessThan(0.05);
  });

  it('counts 183 / 749 / 318 items per category (official mapping) and stores per-item judgments', async () => {
    for (const stage of ['first-swap', 'unbiased-swap']) {
      expect(pick(rows, stage, 'accuracy', 'category:general', 'excluded')!.n).toBe(183);
      expect(pick(rows, stage, 'accuracy', 'category:hallucination', 'excluded')!.n).toBe(749);
      expect(pick(rows, stage, 'accuracy', 'category:reasoning', 'excluded')!.n).toBe(318);
      expect(pick(rows, stage, 'accuracy', 'overall', 'excluded')!.n).toBe(1250);
    }
    const js = await db.db
      .select()
      .from(judgments)
      .where(and(eq(judgments.runId, runId), eq(judgments.stageId, 'unbiased-swap')));
    expect(js).toHaveLength(2500);
    expect(new Set(js.map((j) => `${j.itemKey}/${j.view}`)).size).toBe(2500);
    // Each item was shown in both orders.
    const orders = new Map<string, string[]>();
    for (const j of js) orders.set(j.itemKey, [...(orders.get(j.itemKey) ?? []), j.permutation.join('')]);
    expect([...orders.values()].every((o) => o.sort().join(',') === '01,10')).toBe(true);
  });

  it('names the headline policy and reports both for unparseable outputs; majority vote over 3 samples', () => {
    const excluded = pick(rows, 'messy-k3', 'accuracy', 'overall', 'excluded')!;
    const wrong = pick(rows, 'messy-k3', 'accuracy', 'overall', 'wrong')!;
    expect(pick(rows, 'messy-k3', 'headline_accuracy', 'overall', 'excluded')!.value).toBe(excluded.value);
    expect(Math.abs(pick(rows, 'messy-k3', 'unparseable_rate')!.value - 0.2)).toBeLessThan(0.03);
    expect(wrong.value).toBeLessThan(excluded.value);
    // Majority of 3 samples at 80% each: 0.8^3 + 3·0.8^2·0.2 ≈ 0.896 when all parse; more than a single sample.
    expect(excluded.value).toBeGreaterThan(0.84);
    expect(pick(rows, 'messy-k3', 'requests')!.value).toBe(3750);
  });

  it('a re-run of the same spec (another label) sends 0 requests and reproduces every number, CIs included', async () => {
    const before = sim.stats().requests;
    // Stage reuse off: the stages run again, every request from the cache.
    const again = await launchRun({ loaded, label: 'again', db: db.db, client, taskQueue: TQ, noReuse: loaded.plan.map((s) => s.id) });
    expect(again.runId).not.toBe(runId);
    await client.workflow.getHandle(again.runId).result();
    expect(sim.stats().requests).toBe(before);
    const rerun = await db.db.select().from(metrics).where(eq(metrics.runId, again.runId));
    // Usage and latency describe the requests (all served from the cache now), not the judge.
    const usage = new Set(['requests_cached', 'prompt_tokens', 'completion_tokens', 'cost_usd', 'mean_latency_ms']);
    const key = (m: M) => `${m.stageId}|${m.metric}|${m.scope}|${m.policy}`;
    const numbers = (list: M[]) => Object.fromEntries(list.filter((m) => !usage.has(m.metric)).map((m) => [key(m), [m.value, m.ciLow, m.ciHigh, m.n]]));
    expect(numbers(rerun)).toEqual(numbers(rows));
    expect(pick(rerun, 'unbiased-swap', 'requests_cached')!.value).toBe(2500);
  });
});
