/**
 * Replay from a failed stage, an ablation grid with a shared upstream stage, and `compare` on
 * both: real Temporal, Postgres, the simulator over HTTP, the judgeflow bin.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRng } from '../../activities/evaluate/rng.js';
import type { Comparison } from '../../activities/compare/comparison.js';
import { launchRun } from '../../cli/launch.js';
import { planReplay } from '../../cli/replay-plan.js';
import type { DbHandle } from '../../db/client.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import type { RunningWorker } from '../../worker.js';
import { runCli } from '../helpers/cli.js';
import { REPO, openTestDb, startTestWorker, testClient, uniqueName } from '../helpers/env.js';
import { specFromObject, writeSpec } from '../helpers/spec.js';

const TQ = uniqueName('compare');
const ITEMS = 40;
const ERROR_TYPES = ['hallucination', 'incompleteness'];
let db: DbHandle;
let sim: SimHandle;
let worker: RunningWorker;
let client: Client;
let closeClient: () => Promise<void>;
const cli = (args: string[]) => runCli(args, { JUDGEFLOW_TASK_QUEUE: TQ });

beforeAll(async () => {
  db = await openTestDb();
  sim = await startSimulator({
    seed: 5,
    models: {
      writer: { behaviour: 'negatives' },
      judge: { behaviour: 'judge', accuracy: 0.8 },
      'judge-first': { behaviour: 'judge', first_bias: 1 },
      // Slow enough that the test can fail its stage while it runs.
      'judge-slow': { behaviour: 'judge', accuracy: 0.8, latency: { kind: 'fixed', ms: 400 } },
    },
  });
  worker = await startTestWorker(TQ);
  ({ client, close: closeClient } = await testClient());
});
afterAll(async () => {
  await worker?.shutdown();
  await closeClient?.();
  await sim?.close();
  await db?.close();
});

const q = async <T extends Record<string, unknown>>(text: string, params: unknown[] = []) => (await db.pool.query<T>(text, params)).rows;

function baseSpec(name: string, limit = ITEMS) {
  return {
    name,
    seed: 11,
    endpoints: {
      writer: { base_url: sim.url, model: 'writer', concurrency: 32 },
      judge: { base_url: sim.url, model: 'judge', concurrency: 32 },
      'judge-first': { base_url: sim.url, model: 'judge-first', concurrency: 32 },
      'judge-slow': { base_url: sim.url, model: 'judge-slow', concurrency: 1 },
    },
    datasets: { easy: { format: 'easy-vqa', split: 'test', limit } },
    stages: [
      { id: 'synth', uses: 'synthesize', with: { items: 'easy', writer: 'writer', error_types: ERROR_TYPES, k: 3, min_negatives: 1 } },
      { id: 'eval', uses: 'evaluate', needs: ['synth'], with: { dataset: { from: 'synth' }, judge: 'judge', positions: 'none', bootstrap: 200 } },
    ] as Record<string, unknown>[],
  };
}

async function waitFor<T>(what: string, f: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const stageRow = async (runId: string, stageId: string) =>
  (
    await q<{
      status: string;
      output: { artifacts?: Record<string, { id: number }> } | null;
      reused_from_run: string | null;
      reused_from_stage: string | null;
    }>('select status, output, reused_from_run, reused_from_stage from stages where run_id = $1 and stage_id = $2', [runId, stageId])
  )[0]!;

describe('replay from a failed stage', () => {
  const name = uniqueName('replay');
  let original: string;
  let replay: string;

  beforeAll(async () => {
    const spec = baseSpec(name);
    spec.stages.push({
      id: 'eval-slow',
      uses: 'evaluate',
      needs: ['synth'],
      with: { dataset: { from: 'synth' }, judge: 'judge-slow', positions: 'none', bootstrap: 200 },
    });
    const loaded = await specFromObject(spec);
    ({ runId: original } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ }));
    // The slow stage fails mid-way: its child workflow is terminated (a crash the run cannot retry).
    await waitFor('eval-slow to be running', async () => ((await stageRow(original, 'eval-slow')).status === 'running' ? true : undefined));
    await waitFor('the eval-slow child workflow', () =>
      client.workflow
        .getHandle(`${original}/eval-slow`)
        .terminate('simulated crash')
        .then(
          () => true,
          (err: unknown) => {
            if (err instanceof WorkflowNotFoundError) return undefined;
            throw err;
          },
        ),
    );
    await expect(client.workflow.getHandle(original).result()).rejects.toThrow();
  }, 300_000);

  it('the original run failed at eval-slow; synth and eval succeeded', async () => {
    expect((await q<{ status: string }>('select status from runs where id = $1', [original]))[0]!.status).toBe('failed');
    expect((await stageRow(original, 'eval-slow')).status).toBe('failed');
    expect((await stageRow(original, 'synth')).status).toBe('succeeded');
    expect((await stageRow(original, 'eval')).status).toBe('succeeded');
  });

  it('replays from eval-slow with another judge: upstream stages send 0 requests and keep their artifact ids', async () => {
    const before = sim.stats().byModel;
    const plan = await planReplay(db.db, { runId: original, from: 'eval-slow', sets: ['stages.eval-slow.with.judge=judge-first'] });
    expect(plan.recomputed).toEqual(['eval-slow']);
    ({ runId: replay } = await launchRun({ loaded: plan.loaded, db: db.db, client, taskQueue: TQ, ...plan.extras }));
    expect(replay).not.toBe(original);
    await client.workflow.getHandle(replay).result();
    const after = sim.stats().byModel;
    expect((after.writer ?? 0) - (before.writer ?? 0)).toBe(0);
    expect((after.judge ?? 0) - (before.judge ?? 0)).toBe(0);
    const recomputed = (
      await q<{ n: number }>('select count(*)::int as n from inference_requests where run_id = $1 and stage_id = $2', [replay, 'eval-slow'])
    )[0]!.n;
    expect(recomputed).toBeGreaterThan(ITEMS * 0.8);
    expect((after['judge-first'] ?? 0) - (before['judge-first'] ?? 0)).toBe(recomputed);
    const [synthA, synthB] = [await stageRow(original, 'synth'), await stageRow(replay, 'synth')];
    expect(synthB.status).toBe('succeeded');
    expect(synthB.output!.artifacts!.items!.id).toBe(synthA.output!.artifacts!.items!.id);
    expect([synthB.reused_from_run, synthB.reused_from_stage]).toEqual([original, 'synth']);
    expect(
      (await q<{ n: number }>('select count(*)::int as n from inference_requests where run_id = $1 and stage_id in ($2, $3)', [replay, 'synth', 'eval']))[0]!.n,
    ).toBe(0);
    // Nothing copied: the replay's run made no artifact of its own for synth.
    expect((await q<{ n: number }>("select count(*)::int as n from artifacts where run_id = $1 and stage_id = 'synth'", [replay]))[0]!.n).toBe(0);
  });

  it('status says where kept stages came from and links every stage to the Temporal Web UI', async () => {
    const res = await runCli(['status', replay], { TEMPORAL_UI_URL: 'http://ui.example:8080' });
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`reused from ${original}/synth`);
    expect(res.stdout).toContain(`http://ui.example:8080/namespaces/default/workflows/${encodeURIComponent(`${replay}/eval-slow`)}`);
  });

  it('compare shows the replayed stage’s change: the always-first judge picks position 1 every time', async () => {
    const res = await cli(['compare', `${original}/eval`, `${replay}/eval-slow`, `${replay}/eval`, '--json']);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const cmp = JSON.parse(res.stdout) as Comparison;
    expect(cmp.sides.map((s) => s.firstPositionRate! < 0.7)).toEqual([true, false, true]);
    expect(cmp.sides[1]!.firstPositionRate).toBe(1);
    expect(cmp.sides[2]!.reusedFrom).toBe(`${original}/eval`);
    const [changed, kept] = cmp.pairs;
    expect(changed!.shared).toBeGreaterThan(ITEMS * 0.8);
    expect(changed!.delta).not.toBe(0);
    // The kept stage is the original stage: identical per-item scores.
    expect([kept!.delta, kept!.mcnemar!.b, kept!.mcnemar!.c, kept!.mcnemar!.p]).toEqual([0, 0, 0, 1]);
  });

  it('refuses a replay whose --set changes an upstream stage (exit 2)', async () => {
    const res = await cli(['replay', original, '--from', 'eval-slow', '--set', 'stages.synth.with.k=4', '--detach']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/change stage "synth", which is upstream of "eval-slow": replay from "synth" instead/);
  });
});

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
  const p = (2 * Number((sum * 10n ** 18n) / 2n ** BigInt(n))) / 1e18;
  return Math.min(1, p);
}

describe('an ablation grid (2 judges × 3 temperatures)', () => {
  const name = uniqueName('grid');
  let groupId: string;
  let runs: { id: string; axes: Record<string, unknown> }[];
  let writerRequests: number;

  beforeAll(async () => {
    // Another seed than the replay test's spec: its synth stage must run here, not be reused from there.
    const spec = {
      ...baseSpec(name),
      seed: 12,
      ablations: { axes: { judge: { path: 'stages.eval.with.judge', values: ['judge', 'judge-first'] }, 'stages.eval.with.temperature': [0.2, 0.6, 1.0] } },
    };
    const before = sim.stats().byModel.writer ?? 0;
    const res = await cli(['run', writeSpec(spec), '--json']);
    expect(res.code, res.stderr).toBe(0);
    ({ groupId } = JSON.parse(res.stdout) as { groupId: string });
    writerRequests = (sim.stats().byModel.writer ?? 0) - before;
    runs = await q<{ id: string; axes: Record<string, unknown> }>('select id, axes from runs where group_id = $1 order by id', [groupId]);
  }, 600_000);

  it('launches 6 runs, ids from the group and the values', () => {
    expect(runs).toHaveLength(6);
    expect(runs.map((r) => r.id).sort()).toEqual(['judge', 'judge-first'].flatMap((j) => ['0.2', '0.6', '1'].map((t) => `${groupId}-${j}.${t}`)).sort());
  });

  it('the shared synth stage ran once: one stage ran it, five reused it, the writer answered its requests once', async () => {
    const rows = await q<{ run_id: string; reused_from_run: string | null; attempts: number }>(
      "select run_id, reused_from_run, attempts from stages where stage_id = 'synth' and run_id = any($1)",
      [runs.map((r) => r.id)],
    );
    const ran = rows.filter((r) => r.reused_from_run === null);
    expect(ran).toHaveLength(1);
    expect(rows.filter((r) => r.reused_from_run === ran[0]!.run_id)).toHaveLength(5);
    expect(
      (await q<{ n: number }>("select count(*)::int as n from inference_requests where stage_id = 'synth' and run_id = any($1)", [runs.map((r) => r.id)]))[0]!
        .n,
    ).toBe(ITEMS * ERROR_TYPES.length);
    expect(writerRequests).toBe(ITEMS * ERROR_TYPES.length);
  });

  it('list --group and status on the group show the 6 runs', async () => {
    const list = await cli(['list', '--group', groupId]);
    expect(list.code).toBe(0);
    for (const r of runs) expect(list.stdout).toContain(r.id);
    const status = await cli(['status', groupId, '--json']);
    expect(status.code).toBe(0);
    expect((JSON.parse(status.stdout) as { runs: { status: string }[] }).runs.map((r) => r.status)).toEqual(Array(6).fill('succeeded'));
  });

  it('compare --group --by judge: paired statistics equal an independent computation', async () => {
    const res = await cli(['compare', '--group', groupId, '--by', 'judge', '--resamples', '500', '--json']);
    expect(res.code, res.stderr).toBe(0);
    const cmp = JSON.parse(res.stdout) as Comparison;
    expect(cmp.pairs).toHaveLength(3);
    for (const pair of cmp.pairs) {
      const a = cmp.sides.find((s) => s.label === pair.a)!;
      const b = cmp.sides.find((s) => s.label === pair.b)!;
      expect(a.axes!.judge).toBe('judge');
      expect(b.axes!.judge).toBe('judge-first');
      expect(b.axes!['stages.eval.with.temperature']).toBe(a.axes!['stages.eval.with.temperature']);
      // Independently: per-item correctness straight from the judgments table (one view, one sample).
      const correct = async (runId: string) => {
        const origin = (
          await q<{ r: string; s: string }>(
            "select coalesce(reused_from_run, run_id) as r, coalesce(reused_from_stage, stage_id) as s from stages where run_id = $1 and stage_id = 'eval'",
            [runId],
          )
        )[0]!;
        const rows = await q<{ item_key: string; correct: number | null }>(
          "select item_key, correct from judgments where run_id = $1 and stage_id = $2 and status = 'parsed'",
          [origin.r, origin.s],
        );
        return new Map(rows.map((r) => [r.item_key, r.correct!]));
      };
      const ca = await correct(a.runId);
      const cb = await correct(b.runId);
      const keys = [...ca.keys()].filter((k) => cb.has(k)).sort();
      expect(pair.shared).toBe(keys.length);
      const bCount = keys.filter((k) => ca.get(k) === 1 && cb.get(k) === 0).length;
      const cCount = keys.filter((k) => ca.get(k) === 0 && cb.get(k) === 1).length;
      expect([pair.mcnemar!.b, pair.mcnemar!.c, pair.mcnemar!.items]).toEqual([bCount, cCount, keys.length]);
      expect(pair.mcnemar!.p).toBeCloseTo(mcnemarBigInt(bCount, cCount), 12);
      // Paired bootstrap with the same seeded stream: draw n indices per resample, mean of B − A.
      const d = keys.map((k) => cb.get(k)! - ca.get(k)!);
      const rng = createRng('judgeflow/compare/paired', cmp.seed);
      const means: number[] = [];
      for (let r = 0; r < 500; r++) {
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
      expect(pair.delta).toBeCloseTo(d.reduce((x, y) => x + y, 0) / d.length, 12);
      expect(pair.ci[0]).toBeCloseTo(pct(0.025), 12);
      expect(pair.ci[1]).toBeCloseTo(pct(0.975), 12);
    }
  });

  it('compare refuses different datasets and different scoring policies (exit 2)', async () => {
    const other = await specFromObject(baseSpec(uniqueName('other'), ITEMS - 10));
    const { runId: otherRun } = await launchRun({ loaded: other, db: db.db, client, taskQueue: TQ });
    await client.workflow.getHandle(otherRun).result();
    const ds = await cli(['compare', `${runs[0]!.id}/eval`, `${otherRun}/eval`]);
    expect(ds.code).toBe(2);
    expect(ds.stderr).toMatch(/refused: different datasets: .* evaluates artifact \d+ "items" \(content [0-9a-f]{12}\)/);

    const wrong = await cli(['replay', runs[0]!.id, '--from', 'eval', '--set', 'stages.eval.with.headline_policy=wrong', '--label', 'wrong', '--json']);
    expect(wrong.code, wrong.stderr).toBe(0);
    const wrongRun = (JSON.parse(wrong.stdout) as { runId: string }).runId;
    const pol = await cli(['compare', `${runs[0]!.id}/eval`, `${wrongRun}/eval`]);
    expect(pol.code).toBe(2);
    expect(pol.stderr).toMatch(/refused: different scoring policies: .*"excluded", .*"wrong"; set the same headline_policy/);
  });
});

describe('replay --failed-items', () => {
  it('sends again only the requests that failed, and the new run has none failed', async () => {
    const flaky = await startSimulator({
      seed: 9,
      // 30% of first attempts answer 500; a body's second attempt always succeeds.
      models: { judge: { behaviour: 'judge', accuracy: 0.8, faults: { rate_500: 0.3, max_faults_per_body: 1 } } },
    });
    try {
      const name = uniqueName('flaky');
      const loaded = await specFromObject({
        name,
        seed: 4,
        endpoints: { judge: { base_url: flaky.url, model: 'judge', concurrency: 8, max_attempts: 1 } },
        datasets: { vlrb: { path: `${REPO}/data/vl-rewardbench/data.jsonl`, limit: 60 } },
        stages: [{ id: 'eval', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge', positions: 'none', bootstrap: 0, max_failed_share: 1 } }],
      });
      const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
      await client.workflow.getHandle(runId).result();
      const failed = (await q<{ items_failed: number }>("select items_failed from stages where run_id = $1 and stage_id = 'eval'", [runId]))[0]!.items_failed;
      expect(failed).toBeGreaterThan(5);
      const before = flaky.stats().requests;
      const res = await cli(['replay', runId, '--from', 'eval', '--failed-items', '--json']);
      expect(res.code, res.stderr).toBe(0);
      const replayId = (JSON.parse(res.stdout) as { runId: string }).runId;
      expect(flaky.stats().requests - before).toBe(failed);
      expect(
        (
          await q<{ items_failed: number; items_done: number }>("select items_failed, items_done from stages where run_id = $1 and stage_id = 'eval'", [
            replayId,
          ])
        )[0],
      ).toEqual({ items_failed: 0, items_done: 60 });
      const again = await cli(['replay', runId, '--from', 'eval', '--failed-items', '--set', 'stages.eval.with.samples=2']);
      expect(again.code).toBe(2);
      expect(again.stderr).toMatch(/--failed-items re-runs stage "eval" as it was; the --set flags change it/);
    } finally {
      await flaky.close();
    }
  });
});
