/**
 * `judgeflow compare` on sweep and distill stages: curves and acceptance rates side by side, and
 * paired statistics that equal an independent computation from the stored rows (same seeded
 * bootstrap stream, exact McNemar by integer arithmetic, the z-test by numerical integration).
 * Real Temporal, Postgres, the simulator over HTTP, the judgeflow bin.
 */
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DistillComparison } from '../../activities/compare/distill.js';
import type { SweepComparison } from '../../activities/compare/sweep.js';
import { locateEasyVqa } from '../../activities/datasets/qa.js';
import { createRng } from '../../activities/evaluate/rng.js';
import type { DbHandle } from '../../db/client.js';
import '../../spec/builtin.js';
import type { RunningWorker } from '../../worker.js';
import { runCli } from '../helpers/cli.js';
import { openTestDb, startTestWorker, testClient, uniqueName } from '../helpers/env.js';
import { distillSpec, runGroup, runOne, startKindSims, sweepSpec, type KindSims } from '../helpers/kind-groups.js';

const TQ = uniqueName('cmp-kinds');
const SEED = 23;
const QUESTIONS = 60;
const ITEMS = 80;
const RESAMPLES = 300;
let db: DbHandle;
let kinds: KindSims;
let worker: RunningWorker;
let client: Client;
let closeClient: () => Promise<void>;
const cli = (args: string[]) => runCli(args, { JUDGEFLOW_TASK_QUEUE: TQ });
const q = async <T extends Record<string, unknown>>(text: string, params: unknown[] = []) => (await db.pool.query<T>(text, params)).rows;

beforeAll(async () => {
  db = await openTestDb();
  worker = await startTestWorker(TQ);
  ({ client, close: closeClient } = await testClient());
  kinds = await startKindSims({ db, client, taskQueue: TQ, seed: SEED, distillItems: ITEMS });
}, 600_000);
afterAll(async () => {
  await worker?.shutdown();
  await closeClient?.();
  await kinds?.close();
  await db?.close();
});

// --- Independent computations ------------------------------------------------------------------

/** The same seeded paired bootstrap, written out: n draws per resample, mean of B − A, R-7 percentiles. */
function bootstrap(d: number[], seed: number): { delta: number; ci: [number, number] } {
  const rng = createRng('judgeflow/compare/paired', seed);
  const means: number[] = [];
  for (let r = 0; r < RESAMPLES; r++) {
    let s = 0;
    for (let i = 0; i < d.length; i++) s += d[rng.nextInt(d.length)]!;
    means.push(s / d.length);
  }
  means.sort((x, y) => x - y);
  const pct = (p: number) => {
    const h = (means.length - 1) * p;
    const lo = Math.floor(h);
    return means[lo]! + (h - lo) * (means[Math.min(lo + 1, means.length - 1)]! - means[lo]!);
  };
  return { delta: d.reduce((x, y) => x + y, 0) / d.length, ci: [pct(0.025), pct(0.975)] };
}

/** Exact two-sided McNemar by integer arithmetic (BigInt binomial coefficients). */
function mcnemarBigInt(b: number, c: number): number {
  const n = b + c;
  if (n === 0) return 1;
  let coef = 1n;
  let sum = 0n;
  for (let i = 0; i <= Math.min(b, c); i++) {
    if (i > 0) coef = (coef * BigInt(n - i + 1)) / BigInt(i);
    sum += coef;
  }
  return Math.min(1, (2 * Number((sum * 10n ** 18n) / 2n ** BigInt(n))) / 1e18);
}

/** Two-sided p of a standard normal statistic: 1 − 2∫₀^|z| φ by Simpson's rule. */
function normalTwoSided(z: number): number {
  const steps = 20_000;
  const h = Math.abs(z) / steps;
  const phi = (x: number) => Math.exp((-x * x) / 2) / Math.sqrt(2 * Math.PI);
  let s = phi(0) + phi(Math.abs(z));
  for (let i = 1; i < steps; i++) s += (i % 2 ? 4 : 2) * phi(i * h);
  return Math.min(1, 1 - 2 * ((s * h) / 3));
}

/** Wilson 95% interval. */
function wilson(k: number, n: number): [number, number] {
  const z = 1.959963984540054;
  const p = k / n;
  const centre = (p + (z * z) / (2 * n)) / (1 + (z * z) / n);
  const half = (z / (1 + (z * z) / n)) * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n));
  return [centre - half, centre + half];
}

/** Per question: mean grade ×100 of the answers a strategy picked at N (over the replicates), from the stored rows. */
async function questionScores(runId: string, strategy: string, n: number): Promise<Map<string, number>> {
  const rows = await q<{ item_key: string; score: number }>(
    `select s.item_key, 100 * avg(g.grade) as score from sweep_selections s
     join sweep_samples g on g.run_id = s.run_id and g.stage_id = s.stage_id and g.item_key = s.item_key and g.sample = s.sample
     where s.run_id = $1 and s.stage_id = 'bon' and s.strategy = $2 and s.n = $3 group by s.item_key`,
    [runId, strategy, n],
  );
  return new Map(rows.map((r) => [r.item_key, Number(r.score)]));
}

const curvePoint = async (runId: string, strategy: string, n: number) =>
  (
    await q<{ score: number; cost_usd: number; ci_low: number; ci_high: number }>(
      `select p.score, p.cost_usd, p.ci_low, p.ci_high from curve_points p join artifacts a on a.id = p.artifact_id
       where a.run_id = $1 and a.stage_id = 'bon' and p.strategy = $2 and p.n = $3 and p.capability = 'total'`,
      [runId, strategy, n],
    )
  )[0];

describe('compare on sweep stages', () => {
  let groupId: string;
  let runs: string[];

  beforeAll(async () => {
    ({ groupId, runs } = await runGroup({
      spec: sweepSpec(kinds.sim, { name: uniqueName('cmp-sweep'), seed: SEED, questions: QUESTIONS }),
      axis: { name: 'judge', path: 'stages.bon.with.judge', values: ['judge', 'judge-biased'] },
      db,
      client,
      taskQueue: TQ,
    }));
  }, 600_000);

  it('--group: curves side by side and, per (strategy, N), paired differences equal to an independent computation', async () => {
    const res = await cli(['compare', '--group', groupId, '--resamples', String(RESAMPLES), '--json']);
    expect(res.code, res.stderr).toBe(0);
    const cmp = JSON.parse(res.stdout) as SweepComparison;
    expect(cmp.kind).toBe('sweep');
    expect(cmp.sides.map((s) => s.runId)).toEqual(runs);
    expect(cmp.sides.map((s) => s.label)).toEqual(['judge=judge', 'judge=judge-biased']);
    // The (strategy, N) points of the stored curves, both sides.
    const stored = await q<{ strategy: string; n: number }>(
      `select p.strategy, p.n from curve_points p join artifacts a on a.id = p.artifact_id where a.run_id = $1 and a.stage_id = 'bon' and p.capability = 'total' order by p.strategy, p.n`,
      [runs[0]],
    );
    expect(stored.length).toBeGreaterThanOrEqual(8);
    expect(cmp.sides[0]!.points.map((p) => `${p.strategy}|${p.n}`).sort()).toEqual(stored.map((p) => `${p.strategy}|${p.n}`).sort());
    expect(cmp.pairs.map((p) => `${p.strategy}|${p.n}`).sort()).toEqual(stored.map((p) => `${p.strategy}|${p.n}`).sort());
    for (const pair of cmp.pairs) {
      const [qa, qb] = [await questionScores(runs[0]!, pair.strategy, pair.n), await questionScores(runs[1]!, pair.strategy, pair.n)];
      const keys = [...qa.keys()].filter((k) => qb.has(k)).sort();
      expect(pair.shared).toBe(QUESTIONS);
      expect(keys).toHaveLength(QUESTIONS);
      const mean = (m: Map<string, number>) => keys.reduce((s, k) => s + m.get(k)!, 0) / keys.length;
      expect(pair.valueA).toBeCloseTo(mean(qa), 9);
      expect(pair.valueB).toBeCloseTo(mean(qb), 9);
      // The same numbers as the curves the stages stored (computed by the stage, not by compare).
      const [pa, pb] = [await curvePoint(runs[0]!, pair.strategy, pair.n), await curvePoint(runs[1]!, pair.strategy, pair.n)];
      expect(pair.valueA).toBeCloseTo(pa!.score, 9);
      expect(pair.valueB).toBeCloseTo(pb!.score, 9);
      expect([pair.costA, pair.costB]).toEqual([pa!.cost_usd, pb!.cost_usd]);
      const boot = bootstrap(
        keys.map((k) => qb.get(k)! - qa.get(k)!),
        cmp.seed,
      );
      expect(pair.delta).toBeCloseTo(boot.delta, 9);
      expect(pair.ci[0]).toBeCloseTo(boot.ci[0], 9);
      expect(pair.ci[1]).toBeCloseTo(boot.ci[1], 9);
    }
    // random and oracle do not ask the judge: the same pool, the same picks, no difference at all.
    for (const p of cmp.pairs.filter((x) => x.strategy !== 'mc')) expect([p.delta, ...p.ci], `${p.strategy} N=${p.n}`).toEqual([0, 0, 0]);
    // The position-biased judge does pick differently at N = 4.
    expect(cmp.pairs.find((p) => p.strategy === 'mc' && p.n === 4)!.delta).not.toBe(0);
    expect(cmp.sides[0]!.points.find((p) => p.strategy === 'mc' && p.n === 4)!.costUsd).toBeGreaterThan(0);

    const text = await cli(['compare', '--group', groupId, '--resamples', String(RESAMPLES)]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('paired on shared questions: B − A in points');
    const mc4 = cmp.pairs.find((p) => p.strategy === 'mc' && p.n === 4)!;
    expect(text.stdout).toMatch(
      new RegExp(`judge=judge\\s+judge=judge-biased\\s+mc\\s+4\\s+${QUESTIONS}\\s+${mc4.valueA.toFixed(1)}\\s+${mc4.valueB.toFixed(1)}`),
    );
  });

  it('pairs only the questions both sides scored, and says how many', async () => {
    const fewer = await runOne(sweepSpec(kinds.sim, { name: uniqueName('cmp-sweep-40'), seed: SEED, questions: 40 }), { db, client, taskQueue: TQ });
    const res = await cli(['compare', `${runs[0]}/bon`, `${fewer}/bon`, '--resamples', String(RESAMPLES), '--json']);
    expect(res.code, res.stderr).toBe(0);
    const cmp = JSON.parse(res.stdout) as SweepComparison;
    expect(cmp.sides.map((s) => s.questions)).toEqual([QUESTIONS, 40]);
    for (const pair of cmp.pairs) {
      expect(pair.shared).toBe(40);
      const qa = await questionScores(runs[0]!, pair.strategy, pair.n);
      const qb = await questionScores(fewer, pair.strategy, pair.n);
      const keys = [...qb.keys()].sort();
      expect(pair.valueA).toBeCloseTo(keys.reduce((s, k) => s + qa.get(k)!, 0) / 40, 9);
      // The same policy, seed and judge: on the same 40 questions nothing differs.
      expect(pair.delta).toBe(0);
    }
  });

  it('--kind picks the kind; an unknown kind or one with no stages here exits 2', async () => {
    const bad = await cli(['compare', '--group', groupId, '--kind', 'bogus']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--kind bogus: use one of evaluate, sweep, distill/);
    const none = await cli(['compare', '--group', groupId, '--kind', 'distill']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('refused: need at least two distill stages to compare, got 0');
    const sweepKind = await cli(['compare', '--group', groupId, '--kind', 'sweep', '--resamples', '10', '--json']);
    expect(sweepKind.code, sweepKind.stderr).toBe(0);
    expect((JSON.parse(sweepKind.stdout) as SweepComparison).pairs.length).toBeGreaterThan(0);
  });

  it('refuses different graders and different question sets (exit 2)', async () => {
    const exact = await runOne(sweepSpec(kinds.sim, { name: uniqueName('cmp-sweep-exact'), seed: SEED, questions: 20, grader: 'exact' }), {
      db,
      client,
      taskQueue: TQ,
    });
    const g = await cli(['compare', `${runs[0]}/bon`, `${exact}/bon`]);
    expect(g.code).toBe(2);
    expect(g.stderr).toMatch(/refused: different graders: .* by \{"kind":"normalized"\}, .* by \{"kind":"exact"\}; set the same grader/);

    // A qa-jsonl of ten easy-vqa test images with other questions: another dataset.
    const images = join(locateEasyVqa(), 'test', 'images');
    const dir = mkdtempSync(join(tmpdir(), 'jf-qa-'));
    const files = readdirSync(images).sort().slice(0, 10);
    writeFileSync(
      join(dir, 'qa.jsonl'),
      files.map((f, i) => JSON.stringify({ id: `q${i}`, image: join(images, f), question: `What shape is in image ${i}?`, answer: 'circle' })).join('\n') +
        '\n',
    );
    const spec = sweepSpec(kinds.sim, { name: uniqueName('cmp-sweep-qa'), seed: SEED, questions: 10 });
    (spec.datasets as Record<string, unknown>).easy = { path: join(dir, 'qa.jsonl'), format: 'qa-jsonl' };
    const other = await runOne(spec, { db, client, taskQueue: TQ });
    const d = await cli(['compare', `${runs[0]}/bon`, `${other}/bon`]);
    expect(d.code).toBe(2);
    expect(d.stderr).toMatch(
      /refused: different question sets: .* swept artifact \d+ "easy" \(content [0-9a-f]{12}\), .* swept artifact \d+ "easy" \(content [0-9a-f]{12}\)/,
    );
  });
});

describe('compare on distill stages', () => {
  let groupId: string;
  let runs: string[];

  beforeAll(async () => {
    ({ groupId, runs } = await runGroup({
      spec: distillSpec(kinds, { name: uniqueName('cmp-distill'), seed: SEED, items: ITEMS }),
      axis: { name: 'hint', path: 'stages.distill.with.hint', values: [false, true] },
      db,
      client,
      taskQueue: TQ,
    }));
  }, 600_000);

  const attempts = async (runId: string) =>
    q<{ item_key: string; attempt: number; status: string; error_types: string[] }>(
      "select item_key, attempt, status, error_types from distill_attempts where run_id = $1 and stage_id = 'distill'",
      [runId],
    );

  it('--group: acceptance rates side by side with Wilson CIs; paired item rates and two-proportion trace rates equal an independent computation', async () => {
    const res = await cli(['compare', '--group', groupId, '--kind', 'distill', '--resamples', String(RESAMPLES), '--json']);
    expect(res.code, res.stderr).toBe(0);
    const cmp = JSON.parse(res.stdout) as DistillComparison;
    expect(cmp.kind).toBe('distill');
    expect(cmp.sides.map((s) => [s.runId, s.hint])).toEqual([
      [runs[0], false],
      [runs[1], true],
    ]);
    const [ra, rb] = [await attempts(runs[0]!), await attempts(runs[1]!)];
    const perItem = (rows: typeof ra, first: boolean) => {
      const m = new Map<string, number>();
      for (const r of rows) m.set(r.item_key, Math.max(m.get(r.item_key) ?? 0, r.status === 'accepted' && (!first || r.attempt === 0) ? 1 : 0));
      return m;
    };
    // Side by side: items accepted with their Wilson interval.
    for (const [i, rows] of [ra, rb].entries()) {
      const acc = perItem(rows, false);
      const k = [...acc.values()].filter((v) => v === 1).length;
      const side = cmp.sides[i]!;
      expect([side.accepted.k, side.accepted.n]).toEqual([k, ITEMS]);
      expect(side.accepted.ciLow).toBeCloseTo(wilson(k, ITEMS)[0], 12);
      expect(side.accepted.ciHigh).toBeCloseTo(wilson(k, ITEMS)[1], 12);
      expect([side.traces.k, side.traces.n]).toEqual([rows.filter((r) => r.status === 'accepted').length, rows.length]);
    }
    // Only the hinted side can leak the hint.
    expect(cmp.sides[0]!.rejections.hint_leaked).toBeUndefined();
    expect(cmp.sides[1]!.rejections.hint_leaked!.k).toBeGreaterThan(0);

    const pairedCheck = (measure: string, a: Map<string, number>, b: Map<string, number>) => {
      const pair = cmp.pairs.find((p) => p.measure === measure)!;
      expect(pair, measure).toBeDefined();
      const keys = [...a.keys()].filter((k) => b.has(k)).sort();
      expect(pair.shared).toBe(keys.length);
      const bCount = keys.filter((k) => a.get(k) === 1 && b.get(k) === 0).length;
      const cCount = keys.filter((k) => a.get(k) === 0 && b.get(k) === 1).length;
      expect(pair.mcnemar).toEqual({ items: keys.length, b: bCount, c: cCount });
      expect(pair.p).toBeCloseTo(mcnemarBigInt(bCount, cCount), 12);
      const boot = bootstrap(
        keys.map((k) => b.get(k)! - a.get(k)!),
        cmp.seed,
      );
      expect(pair.delta).toBeCloseTo(boot.delta, 12);
      expect(pair.ci).toEqual([expect.closeTo(boot.ci[0], 12), expect.closeTo(boot.ci[1], 12)]);
      return pair;
    };
    const items = pairedCheck('items accepted', perItem(ra, false), perItem(rb, false));
    expect(items.shared).toBe(ITEMS);
    pairedCheck('accepted at attempt 1', perItem(ra, true), perItem(rb, true));
    const type = ra[0]!.error_types[0]!;
    const ofType = (rows: typeof ra) => {
      const tagged = new Set(rows.filter((r) => r.error_types.includes(type)).map((r) => r.item_key));
      return new Map([...perItem(rows, false)].filter(([k]) => tagged.has(k)));
    };
    const typed = pairedCheck(`error type: ${type}`, ofType(ra), ofType(rb));
    expect(typed.shared).toBeLessThan(ITEMS);

    // Traces: different numbers tried on each side, so a two-proportion z-test.
    const traces = cmp.pairs.find((p) => p.measure === 'traces accepted')!;
    const [kA, nA, kB, nB] = [ra.filter((r) => r.status === 'accepted').length, ra.length, rb.filter((r) => r.status === 'accepted').length, rb.length];
    expect([traces.test, traces.nA, traces.nB, traces.shared]).toEqual(['two-proportion', nA, nB, null]);
    const pooled = (kA + kB) / (nA + nB);
    const z = (kB / nB - kA / nA) / Math.sqrt(pooled * (1 - pooled) * (1 / nA + 1 / nB));
    expect(traces.delta).toBeCloseTo(kB / nB - kA / nA, 12);
    expect(traces.p).toBeCloseTo(normalTwoSided(z), 6);
    const se = Math.sqrt(((kA / nA) * (1 - kA / nA)) / nA + ((kB / nB) * (1 - kB / nB)) / nB);
    expect(traces.ci[0]).toBeCloseTo(traces.delta - 1.959963984540054 * se, 12);
    const leaked = cmp.pairs.find((p) => p.measure === 'rejected: hint_leaked')!;
    expect([leaked.valueA, leaked.valueB]).toEqual([0, rb.filter((r) => r.status === 'hint_leaked').length / nB]);

    const text = await cli(['compare', '--group', groupId, '--resamples', String(RESAMPLES)]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('acceptance % (95% Wilson CI)');
    expect(text.stdout).toMatch(new RegExp(`items accepted\\s+${((cmp.sides[0]!.accepted.k / ITEMS) * 100).toFixed(1)} \\[`));
  });

  it('refuses distill stages that read different source items (exit 2)', async () => {
    const other = await runOne(distillSpec(kinds, { name: uniqueName('cmp-distill-60'), seed: SEED, items: 60 }), { db, client, taskQueue: TQ });
    const res = await cli(['compare', `${runs[0]}/distill`, `${other}/distill`]);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(
      /refused: different source items: .* distilled artifact \d+ "items" \(content [0-9a-f]{12}\), .*; compare stages that read the same items/,
    );
  });
});
