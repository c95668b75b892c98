/**
 * The `sweep` stage end to end on easy-vqa: a simulated policy of known per-sample accuracy p,
 * simulated judges of known accuracy a (one unbiased, one with a position bias), the real gateway,
 * Temporal and Postgres. The measured curves are checked against analytical best-of-N values
 * derived here; request counts are counted at the simulator.
 */
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { candidateSets } from '../../activities/sweep/selection.js';
import { launchRun } from '../../cli/launch.js';
import { renderSweepCurve } from '../../cli/sweep-results.js';
import { runArtifacts } from '../../db/artifacts.js';
import type { DbHandle } from '../../db/client.js';
import type { SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { runCli } from '../helpers/cli.js';
import { uniqueName } from '../helpers/env.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { specFromObject } from '../helpers/spec.js';

const TQ = uniqueName('sweep');
const Q = 300;
const P = 0.5;
const A = 0.7;
const BIAS = 0.5;
/** easy-vqa's 13 answers: a wrong answer is one of the 12 others, uniformly. */
const WRONG = 12;
const Z99 = 2.576;

let db: DbHandle;
let sim: SimHandle;
let client: Client;
let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack(TQ, {
    seed: 11,
    models: {
      policy: { behaviour: 'policy', accuracy: P, answers: 'easy-vqa:test' },
      'policy-ko': { behaviour: 'policy', accuracy: P, answers: 'easy-vqa:test' },
      judge: { behaviour: 'judge', accuracy: A, first_bias: 0, think: false },
      'judge-biased': { behaviour: 'judge', accuracy: A, first_bias: BIAS, think: false },
      'judge-ko': { behaviour: 'judge', accuracy: A, think: false },
    },
  });
  ({ db, sim, client } = stack);
});
afterAll(() => stack?.close());

const q = async <T extends Record<string, unknown>>(text: string, params: unknown[] = []) => (await db.pool.query<T>(text, params)).rows;

/** Runs a spec to its end; what the simulator received meanwhile: requests per model, and the tokens of its answers (all models). */
async function run(spec: unknown): Promise<{ runId: string; sent: Record<string, number>; tokens: { prompt: number; completion: number } }> {
  const loaded = await specFromObject(spec);
  const start = sim.stats();
  const before = { ...start.byModel };
  const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
  await client.workflow.getHandle(runId).result();
  const end = sim.stats();
  const after = end.byModel;
  const sent = Object.fromEntries(Object.keys(after).map((m) => [m, (after[m] ?? 0) - (before[m] ?? 0)]));
  return { runId, sent, tokens: { prompt: end.promptTokens - start.promptTokens, completion: end.completionTokens - start.completionTokens } };
}

async function curve(
  runId: string,
  stageId: string,
): Promise<Map<string, { score: number; questions: number; judge_calls: number; policy_samples: number; ci_low: number; ci_high: number }>> {
  const rows = await q<{
    strategy: string;
    n: number;
    score: number;
    questions: number;
    judge_calls: number;
    policy_samples: number;
    ci_low: number;
    ci_high: number;
  }>(
    `select p.strategy, p.n, p.score, p.questions, p.judge_calls, p.policy_samples, p.ci_low, p.ci_high from curve_points p join artifacts a on a.id = p.artifact_id
     where a.run_id = $1 and a.stage_id = $2 and p.capability = 'total'`,
    [runId, stageId],
  );
  return new Map(rows.map((r) => [`${r.strategy}|${r.n}`, r]));
}

// --- Analytical best-of-N, for independent samples right with probability p -------------------

const choose = (n: number, k: number): number => {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
};
const binom = (n: number, c: number, p: number) => choose(n, c) * p ** c * (1 - p) ** (n - c);

/** Oracle: some sample of N is right. */
const oracle = (n: number, p: number) => 1 - (1 - p) ** n;

/**
 * Multiple choice over N shown at once: with probability `bias` the judge answers the first shown
 * (a seeded shuffle, so right with probability p); otherwise it picks a right one (the best) with
 * probability a, else one of the N - 1 others uniformly, c - 1 of which are right when c are.
 */
function mc(n: number, p: number, a: number, bias: number): number {
  if (n === 1) return p;
  let unbiased = 0;
  for (let c = 1; c <= n; c++) unbiased += binom(n, c, p) * (a + ((1 - a) * (c - 1)) / (n - 1));
  return bias * p + (1 - bias) * unbiased;
}

/**
 * Majority over N answers: c right, the N - c wrong ones spread uniformly over m wrong answers; the
 * right answer wins when no wrong answer has more than c votes, and a tie with t wrong answers is
 * won with probability 1/(1+t). A DP over the m wrong answers sums the multinomial weights.
 */
function majority(n: number, p: number, m: number): number {
  const fact = [1];
  for (let i = 1; i <= n; i++) fact.push(fact[i - 1]! * i);
  let total = 0;
  for (let c = 1; c <= n; c++) {
    const w = n - c;
    let dp = Array.from({ length: w + 1 }, () => new Array<number>(m + 1).fill(0));
    dp[0]![0] = 1;
    for (let cls = 0; cls < m; cls++) {
      const nd = Array.from({ length: w + 1 }, () => new Array<number>(m + 1).fill(0));
      for (let used = 0; used <= w; used++) {
        for (let t = 0; t <= cls; t++) {
          const v = dp[used]![t]!;
          if (v === 0) continue;
          for (let k = 0; k <= Math.min(c, w - used); k++) nd[used + k]![t + (k === c ? 1 : 0)]! += v / fact[k]!;
        }
      }
      dp = nd;
    }
    let win = 0;
    for (let t = 0; t <= m; t++) win += (dp[w]![t]! * fact[w]!) / m ** w / (1 + t);
    total += binom(n, c, p) * win;
  }
  return total;
}

/** |measured - expected| within the 99% interval of a mean of Q draws (averaging replicates only narrows it). */
function expectWithin99(measured: number, expected: number, what: string): void {
  const half = Z99 * Math.sqrt((expected * (1 - expected)) / Q) + 1e-9;
  expect(Math.abs(measured - expected), `${what}: measured ${measured.toFixed(4)}, expected ${expected.toFixed(4)} ± ${half.toFixed(4)}`).toBeLessThanOrEqual(
    half,
  );
}

describe('sweep on easy-vqa against analytical best-of-N', () => {
  const NS = [1, 2, 4, 8, 16];
  const name = uniqueName('best-of-n');
  const spec = (ns: number[]) => ({
    name,
    seed: 5,
    endpoints: {
      policy: { base_url: sim.url, model: 'policy', concurrency: 64 },
      judge: { base_url: sim.url, model: 'judge', concurrency: 64 },
      'judge-biased': { base_url: sim.url, model: 'judge-biased', concurrency: 64 },
    },
    datasets: { easy: { format: 'easy-vqa', split: 'test', limit: Q } },
    stages: [
      {
        id: 'bon',
        uses: 'sweep',
        with: {
          items: 'easy',
          policy: 'policy',
          judge: 'judge',
          n: ns,
          n_max: 16,
          resamples: 4,
          strategies: ['random', 'oracle', 'majority', 'mc', { kind: 'knockout', k: 4 }],
          bootstrap: 200,
        },
      },
      {
        id: 'bon-biased',
        uses: 'sweep',
        with: { items: 'easy', policy: 'policy', judge: 'judge-biased', n: [1, 2, 4], n_max: 16, resamples: 4, strategies: ['mc'], bootstrap: 0 },
      },
    ],
  });
  let first: { runId: string; sent: Record<string, number> };

  beforeAll(async () => {
    first = await run(spec(NS));
  }, 900_000);

  it('random = p, oracle = 1 - (1 - p)^N, majority and multiple choice (bias 0 and 0.5) within their 99% intervals', async () => {
    const c = await curve(first.runId, 'bon');
    for (const n of NS) {
      expect(c.get(`random|${n}`)!.questions).toBe(Q);
      expectWithin99(c.get(`random|${n}`)!.score / 100, P, `random N=${n}`);
      expectWithin99(c.get(`oracle|${n}`)!.score / 100, oracle(n, P), `oracle N=${n}`);
      expectWithin99(c.get(`majority|${n}`)!.score / 100, majority(n, P, WRONG), `majority N=${n}`);
      if (n <= 4) expectWithin99(c.get(`mc|${n}`)!.score / 100, mc(n, P, A, 0), `mc (bias 0) N=${n}`);
      else expect(c.has(`mc|${n}`)).toBe(false); // N > K: multiple choice does not apply
    }
    const biased = await curve(first.runId, 'bon-biased');
    for (const n of [1, 2, 4]) expectWithin99(biased.get(`mc|${n}`)!.score / 100, mc(n, P, A, BIAS), `mc (bias ${BIAS}) N=${n}`);
    // The curves rise as they should: a judge of accuracy 0.7 beats random at N = 4, the oracle bounds every strategy.
    expect(c.get('mc|4')!.score).toBeGreaterThan(c.get('random|4')!.score);
    for (const n of NS)
      for (const s of ['random', 'majority', 'knockout-k4']) expect(c.get(`${s}|${n}`)!.score).toBeLessThanOrEqual(c.get(`oracle|${n}`)!.score);
    // Intervals bracket their points.
    for (const p of c.values()) {
      expect(p.ci_low).toBeLessThanOrEqual(p.score);
      expect(p.ci_high).toBeGreaterThanOrEqual(p.score);
    }
  });

  it('policy requests = questions × n_max, counted at the simulator; the second stage reuses the pool from the cache', async () => {
    expect(first.sent.policy).toBe(Q * 16);
    const [rows] = await q<{ n: number }>(`select count(*)::int as n from inference_requests where run_id = $1 and stage_id = 'bon' and endpoint = 'policy'`, [
      first.runId,
    ]);
    expect(rows!.n).toBe(Q * 16);
    // The judge requests sent are the distinct prompts, each once (easy-vqa repeats a few image-question pairs: their prompts are identical).
    const [judged] = await q<{ n: number }>(`select count(distinct cache_key)::int as n from inference_requests where run_id = $1 and endpoint = 'judge'`, [
      first.runId,
    ]);
    expect(first.sent.judge).toBe(judged!.n);
    const c = await curve(first.runId, 'bon');
    expect(c.get('knockout-k4|16')!.judge_calls).toBe(5 * Q);
    expect(c.get('knockout-k4|16')!.policy_samples).toBe(16 * Q);
  });

  it('judgeflow results prints the curve: a row per strategy and N with the stored score, CI and costs', async () => {
    const text = renderSweepCurve(
      'bon',
      (await runArtifacts(db.db, first.runId)).filter((a) => a.stageId === 'bon'),
    );
    const ko = (await curve(first.runId, 'bon')).get('knockout-k4|16')!;
    const row = new RegExp(
      `^knockout-k4\\s+16\\s+${ko.score.toFixed(1)} \\[${ko.ci_low.toFixed(1)}, ${ko.ci_high.toFixed(1)}\\]\\s+${16 * Q}\\s+${5 * Q}\\s`,
      'm',
    );
    expect(text).toMatch(row);
    expect(text.split('\n').filter((l) => /^(random|oracle|majority|mc|knockout-k4)\s+\d+\s/.test(l))).toHaveLength(4 * 5 + 3);
    expect(text).toContain(`requests made by the stage: policy ${Q * 16}`);
    // The real CLI prints the same table.
    const cli = await runCli(['results', first.runId]);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(row);
    expect(cli.stdout.split('\n').filter((l) => /^(random|oracle|majority|mc|knockout-k4)\s+\d+\s/.test(l))).toHaveLength(4 * 5 + 3 + 3); // bon, and bon-biased: mc at N = 1, 2, 4
  });

  it('one more N: the re-run sends only the judge calls of the new point', async () => {
    const again = await run(spec([...NS, 3]));
    expect(again.runId).not.toBe(first.runId);
    expect(again.sent.policy ?? 0).toBe(0);
    // The judge prompts only N = 3 uses (no other N judges a set of three).
    const keys = await q<{ n: number; key: string }>(
      `select distinct s.n, r.cache_key as key from sweep_selections s cross join jsonb_array_elements_text(s.calls) c(key)
       join inference_requests r on r.run_id = s.run_id and r.stage_id = s.stage_id and r.item_key = s.item_key || '|j|' || c.key
       where s.run_id = $1 and s.stage_id = 'bon'`,
      [again.runId],
    );
    const others = new Set(keys.filter((k) => k.n !== 3).map((k) => k.key));
    const onlyNew = new Set(keys.filter((k) => k.n === 3 && !others.has(k.key)).map((k) => k.key));
    expect(onlyNew.size).toBeGreaterThan(Q);
    expect(again.sent.judge).toBe(onlyNew.size);
    expect(again.sent['judge-biased'] ?? 0).toBe(0);
    // Every other point is the same as before: same pool, same sets, same verdicts.
    const before = await curve(first.runId, 'bon');
    const after = await curve(again.runId, 'bon');
    for (const [k, p] of before) expect(after.get(k)!.score).toBeCloseTo(p.score, 9);
    expect(after.has('knockout-k4|3')).toBe(true);
  }, 600_000);
});

describe('knockout in groups of 4 on N = 16', () => {
  const QK = 40;
  /** USD per million tokens, the same on both endpoints: the simulator counts tokens over all models. */
  const PRICE = { input_per_mtok: 0.25, output_per_mtok: 2 };
  const endpoints = () => ({
    policy: { base_url: sim.url, model: 'policy-ko', concurrency: 64, price: PRICE },
    judge: { base_url: sim.url, model: 'judge-ko', concurrency: 64, price: PRICE },
  });
  it('makes exactly 5 judge calls per question and replicate, counted at the simulator; the point costs what the simulator answered', async () => {
    const { runId, sent, tokens } = await run({
      name: uniqueName('knockout'),
      seed: 9,
      endpoints: endpoints(),
      datasets: { easy: { format: 'easy-vqa', split: 'test', limit: QK } },
      stages: [
        {
          id: 'ko',
          uses: 'sweep',
          with: { items: 'easy', policy: 'policy', judge: 'judge', n: [16], n_max: 16, resamples: 3, strategies: [{ kind: 'knockout', k: 4 }], bootstrap: 0 },
        },
      ],
    });
    expect(sent['policy-ko']).toBe(QK * 16);
    expect(sent['judge-ko']).toBe(5 * QK);
    const per = await q<{ n: number }>(`select jsonb_array_length(calls)::int as n from sweep_selections where run_id = $1`, [runId]);
    expect(per.length).toBe(QK);
    expect(per.every((r) => r.n === 5)).toBe(true);
    // N = n_max and one strategy: the point's tokens and cost are those of every request of the run, as the simulator counted them.
    const [ko] = await q<{ tokens: number; cost_usd: number; judge_calls: number }>(
      `select p.tokens, p.cost_usd, p.judge_calls from curve_points p join artifacts a on a.id = p.artifact_id
       where a.run_id = $1 and p.strategy = 'knockout-k4' and p.n = 16 and p.capability = 'total'`,
      [runId],
    );
    expect(ko!.judge_calls).toBe(5 * QK);
    expect(tokens.prompt).toBeGreaterThan(0);
    expect(ko!.tokens).toBe(tokens.prompt + tokens.completion);
    expect(ko!.cost_usd).toBeCloseTo((tokens.prompt * PRICE.input_per_mtok + tokens.completion * PRICE.output_per_mtok) / 1e6, 12);

    // With a larger pool the replicates are different sets of 16: 5 calls each; only shared groups are asked once.
    const pooled = await run({
      name: uniqueName('knockout-32'),
      seed: 9,
      endpoints: endpoints(),
      datasets: { easy: { format: 'easy-vqa', split: 'test', limit: QK } },
      stages: [
        {
          id: 'ko',
          uses: 'sweep',
          with: { items: 'easy', policy: 'policy', judge: 'judge', n: [16], n_max: 32, resamples: 3, strategies: [{ kind: 'knockout', k: 4 }], bootstrap: 0 },
        },
      ],
    });
    const sel = await q<{ item_key: string; replicate: number; calls: string[] }>(`select item_key, replicate, calls from sweep_selections where run_id = $1`, [
      pooled.runId,
    ]);
    expect(sel.length).toBe(QK * 4);
    expect(sel.every((r) => r.calls.length === 5)).toBe(true);
    // Replicate 0 is the first 16 samples, the others seeded draws of 16 of 32.
    expect(candidateSets(9, sel[0]!.item_key, 16, 32, 3)[0]).toEqual(Array.from({ length: 16 }, (_, i) => i));
    const distinct = new Set(sel.flatMap((r) => r.calls.map((c) => `${r.item_key}|${c}`)));
    const [rows] = await q<{ n: number }>(`select count(*)::int as n from inference_requests where run_id = $1 and endpoint = 'judge'`, [pooled.runId]);
    expect(rows!.n).toBe(distinct.size);
    // Samples 0..15 of each question were drawn by the first run: only the other 16 are new.
    expect(pooled.sent['policy-ko']).toBe(QK * 16);
    // The first-16 bracket is the first run's: its 5 calls come from the cache.
    expect(pooled.sent['judge-ko']).toBe(distinct.size - 5 * QK);
  }, 600_000);
});
