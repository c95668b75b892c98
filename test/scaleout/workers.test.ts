/**
 * Scale-out with real processes: three `judgeflow worker`s started from the bin (two on the run's
 * task queue, one on an inference pool's queue) against the test's Postgres and Temporal server,
 * runs launched with `judgeflow run`, the simulator at 50 ms a request. Who ran what is read from
 * the Temporal histories (the identity of every ActivityTaskStarted / WorkflowTaskStarted event).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import { REPO, openTestDb, testClient, testDatabaseUrl, testTemporalAddress, uniqueName } from '../helpers/env.js';
import { runCli } from '../helpers/cli.js';
import { writeSpec } from '../helpers/spec.js';
import type { DbHandle } from '../../db/client.js';

const DATA = `${REPO}/data/vl-rewardbench/data.jsonl`;
const TQ = uniqueName('scaleout');
const GPU = uniqueName('gpu-b');
const ITEMS = 300;
// Two orders per item (swap), one sample: requests per stage.
const PER_STAGE = ITEMS * 2;
const CONCURRENCY_A = 4;
// The pool's endpoint wants a key, and only the pool's worker has it.
const GPU_KEY_ENV = 'JF_SCALEOUT_GPU_KEY';
const GPU_KEY = 'sk-gpu-pool';

/** A `judgeflow` process from the real bin, its output collected as it comes. */
interface Proc {
  child: ChildProcess;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  exit: Promise<number | null>;
}

function judgeflow(args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, [join(REPO, 'bin', 'judgeflow.mjs'), ...args], {
    cwd: REPO,
    env: { ...process.env, DATABASE_URL: testDatabaseUrl(), TEMPORAL_ADDRESS: testTemporalAddress(), JUDGEFLOW_TASK_QUEUE: TQ, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString();
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    exit,
    waitFor(pattern, timeoutMs = 90_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = pattern.exec(out);
          if (!m) return;
          done();
          resolve(m);
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`judgeflow ${args.join(' ')}: no ${pattern} within ${timeoutMs} ms; output:\n${out}`));
        }, timeoutMs);
        const onExit = (code: number | null) => {
          done();
          reject(new Error(`judgeflow ${args.join(' ')} exited (${code}) before printing ${pattern}; output:\n${out}`));
        };
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
          child.off('exit', onExit);
        };
        listeners.add(check);
        child.once('exit', onExit);
        check();
      });
    },
  };
}

interface Worker {
  proc: Proc;
  identity: string;
}

async function startWorkerProcess(args: string[] = [], env: Record<string, string> = {}): Promise<Worker> {
  const proc = judgeflow(['worker', ...args], env);
  const m = await proc.waitFor(/polling task queue "[^"]+" on \S+ as (\S+)/);
  return { proc, identity: m[1]! };
}

async function stop(w: Worker | undefined): Promise<void> {
  if (!w || w.proc.child.exitCode !== null || w.proc.child.signalCode !== null) return;
  w.proc.child.kill('SIGTERM');
  await w.proc.exit;
}

interface ActivityRun {
  type: string;
  queue: string;
  identity: string;
  attempt: number;
  heartbeatTimeoutS: number;
}

/** Every finished activity attempt of a workflow and who ran it, and who ran its workflow tasks. */
async function whoRanWhat(client: Client, workflowId: string): Promise<{ activities: ActivityRun[]; localActivities: string[]; workflowTasks: Set<string> }> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const scheduled = new Map<number, { type: string; queue: string; heartbeatTimeoutS: number }>();
  const activities: ActivityRun[] = [];
  const workflowTasks = new Set<string>();
  // Local activities run inside a workflow task (so on a worker among `workflowTasks`): a marker each.
  const localActivities: string[] = [];
  for (const e of history.events ?? []) {
    const m = e.markerRecordedEventAttributes;
    if (m?.markerName === 'core_local_activity') {
      localActivities.push((JSON.parse(new TextDecoder().decode(m.details!.data!.payloads![0]!.data!)) as { activity_type: string }).activity_type);
    }
    const s = e.activityTaskScheduledEventAttributes;
    if (s) {
      scheduled.set(Number(e.eventId), {
        type: s.activityType!.name!,
        queue: s.taskQueue!.name!,
        heartbeatTimeoutS: Number(s.heartbeatTimeout?.seconds ?? 0),
      });
    }
    const st = e.activityTaskStartedEventAttributes;
    if (st) activities.push({ ...scheduled.get(Number(st.scheduledEventId))!, identity: st.identity!, attempt: st.attempt! });
    const wt = e.workflowTaskStartedEventAttributes;
    if (wt) workflowTasks.add(wt.identity!);
  }
  return { activities, localActivities, workflowTasks };
}

function spec(name: string, simUrl: string, gpuSimUrl: string) {
  return {
    name,
    seed: 21,
    endpoints: {
      'judge-a': { base_url: simUrl, model: 'judge-a', concurrency: CONCURRENCY_A },
      'judge-b': { base_url: gpuSimUrl, model: 'judge-b', concurrency: 8, api_key_env: GPU_KEY_ENV },
    },
    datasets: { vlrb: { path: DATA, limit: ITEMS } },
    stages: [
      // Inference on the default queue, spread over the two workers there.
      { id: 'main', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge-a', chunk_size: 60, parallel: 4, bootstrap: 100 } },
      // Inference on the pool's queue only; its other steps stay on the default queue.
      { id: 'pool', uses: 'evaluate', task_queue: GPU, with: { dataset: 'vlrb', judge: 'judge-b', chunk_size: 60, parallel: 4, bootstrap: 100 } },
    ],
  };
}

const USAGE = new Set(['requests_cached', 'prompt_tokens', 'completion_tokens', 'cost_usd', 'mean_latency_ms']);

/** What a run concluded: every judgment and every metric that does not describe the requests' cost. */
async function conclusions(db: DbHandle, runId: string) {
  const j = await db.pool.query(
    `select stage_id, item_key, view, sample, permutation, status, chosen_position, chosen_candidate, correct
       from judgments where run_id = $1 order by stage_id, item_key, view, sample`,
    [runId],
  );
  const m = await db.pool.query(
    'select stage_id, metric, scope, policy, value, ci_low, ci_high, n from metrics where run_id = $1 order by stage_id, metric, scope, policy',
    [runId],
  );
  return { judgments: j.rows, metrics: m.rows.filter((r: { metric: string }) => !USAGE.has(r.metric)) };
}

async function resultCounts(db: DbHandle, runId: string, stageId: string): Promise<{ results: number; succeeded: number }> {
  const r = await db.pool.query(
    `select count(*)::int as results, count(*) filter (where r.status = 'succeeded')::int as succeeded
       from inference_results r join inference_requests q on q.id = r.request_id
      where q.run_id = $1 and q.stage_id = $2`,
    [runId, stageId],
  );
  return r.rows[0];
}

describe('judgeflow worker: configuration', () => {
  it('refuses one server without the other (exit 2, the missing variable named) instead of starting a local one', async () => {
    const a = await runCli(['worker'], { DATABASE_URL: '', JUDGEFLOW_STATE_DIR: join(REPO, '.judgeflow-never') });
    expect(a.code).toBe(2);
    expect(a.stderr).toContain('judgeflow worker: TEMPORAL_ADDRESS is set but DATABASE_URL is not; set DATABASE_URL too');
    const b = await runCli(['worker'], { TEMPORAL_ADDRESS: '', JUDGEFLOW_STATE_DIR: join(REPO, '.judgeflow-never') });
    expect(b.code).toBe(2);
    expect(b.stderr).toContain('judgeflow worker: DATABASE_URL is set but TEMPORAL_ADDRESS is not; set TEMPORAL_ADDRESS too');
    expect(existsSync(join(REPO, '.judgeflow-never'))).toBe(false);
  });

  it('refuses a task queue name Temporal would not match (exit 2)', async () => {
    const res = await runCli(['worker', '--task-queue', 'gpu b']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--task-queue "gpu b": a task queue name uses letters, digits');
  });
});

describe('scale-out: two workers on the run queue, one on an inference pool', () => {
  let db: DbHandle;
  let sim: SimHandle;
  let gpuSim: SimHandle;
  const requests = () => sim.stats().requests + gpuSim.stats().requests;
  let client: Client;
  let closeClient: () => Promise<void>;
  let specPath: string;
  const workers: { a?: Worker; b?: Worker; gpu?: Worker } = {};

  beforeAll(async () => {
    db = await openTestDb();
    sim = await startSimulator({
      seed: 4,
      truth: DATA,
      latency: { kind: 'fixed', ms: 50 },
      models: { 'judge-a': { behaviour: 'judge', accuracy: 0.8 } },
    });
    gpuSim = await startSimulator({
      seed: 4,
      truth: DATA,
      api_key: GPU_KEY,
      latency: { kind: 'fixed', ms: 50 },
      models: { 'judge-b': { behaviour: 'judge', accuracy: 0.7, first_bias: 0.2 } },
    });
    expect(process.env[GPU_KEY_ENV], 'the default-queue workers must not have the pool key').toBeUndefined();
    ({ client, close: closeClient } = await testClient());
    specPath = writeSpec(spec(uniqueName('scaleout'), sim.url, gpuSim.url));
    [workers.a, workers.b, workers.gpu] = await Promise.all([
      startWorkerProcess(),
      startWorkerProcess(),
      startWorkerProcess(['--task-queue', GPU], { [GPU_KEY_ENV]: GPU_KEY }),
    ]);
  }, 180_000);

  afterAll(async () => {
    await Promise.all([stop(workers.a), stop(workers.b), stop(workers.gpu)]);
    await closeClient?.();
    await sim?.close();
    await gpuSim?.close();
    await db?.close();
  });

  let reference: { runId: string; sent: number };

  it('a run spreads over the workers; the pool stage sends its inference only to the pool worker', async () => {
    const before = requests();
    const res = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = judgeflow(['run', specPath, '--label', 'reference']);
      void p.exit.then((code) => resolve({ code, out: p.output() }));
    });
    expect(res.code, res.out).toBe(0);
    expect(res.out).toMatch(/results of run/);
    const runId = /run (\S+): started/.exec(res.out)![1]!;
    reference = { runId, sent: requests() - before };
    // A fresh cache: every request sent exactly once.
    expect(reference.sent).toBe(2 * PER_STAGE);

    const a = workers.a!.identity;
    const b = workers.b!.identity;
    const gpu = workers.gpu!.identity;
    const main = await whoRanWhat(client, `${runId}/main`);
    const pool = await whoRanWhat(client, `${runId}/pool`);
    const experiment = await whoRanWhat(client, runId);

    const inferenceOf = (runs: ActivityRun[]) => runs.filter((r) => r.type === 'executeRequests');
    // The default queue's inference ran on both of its workers, and on no other.
    expect(new Set(inferenceOf(main.activities).map((r) => r.identity))).toEqual(new Set([a, b]));
    expect(inferenceOf(main.activities).every((r) => r.queue === TQ)).toBe(true);
    // The pool's inference ran only on the pool's worker.
    expect(inferenceOf(pool.activities).length).toBeGreaterThan(0);
    expect(inferenceOf(pool.activities).map((r) => [r.queue, r.identity])).toEqual(inferenceOf(pool.activities).map(() => [GPU, gpu]));
    // Each endpoint was checked where its requests go: the pool's, with its key, by the pool's worker;
    // the default queue's by a local activity of the experiment's workflow task (a default-queue worker).
    const checks = experiment.activities.filter((r) => r.type === 'checkEndpoints');
    expect(checks.map((r) => [r.queue, r.identity === gpu])).toEqual([[GPU, true]]);
    expect(experiment.localActivities.filter((t) => t === 'checkEndpoints')).toHaveLength(1);
    // Everything else (workflows, bookkeeping, import/prepare/judge/metrics) ran on the default queue.
    const others = [
      ...main.activities,
      ...pool.activities.filter((r) => r.type !== 'executeRequests'),
      ...experiment.activities.filter((r) => r.type !== 'checkEndpoints'),
    ];
    expect(others.every((r) => r.queue === TQ && r.identity !== gpu)).toBe(true);
    for (const h of [main, pool, experiment]) expect([...h.workflowTasks].every((id) => id === a || id === b)).toBe(true);
    // Every activity of a stage is noticed within a minute when its worker dies.
    for (const r of [...main.activities, ...pool.activities]) expect(r.heartbeatTimeoutS, r.type).toBeGreaterThan(0);
    for (const r of [...main.activities, ...pool.activities]) expect(r.heartbeatTimeoutS, r.type).toBeLessThanOrEqual(60);

    expect(await resultCounts(db, runId, 'main')).toEqual({ results: PER_STAGE, succeeded: PER_STAGE });
    expect(await resultCounts(db, runId, 'pool')).toEqual({ results: PER_STAGE, succeeded: PER_STAGE });
  });

  it('kill -9 of a default-queue worker mid-stage: the others finish the run, nothing lost, at most `concurrency` requests paid twice', async () => {
    expect(reference, 'needs the reference run of the previous test').toBeDefined();
    const before = requests();
    // Another revision of the endpoints: a cache miss for every request (the simulator's answers do not depend on it).
    const run = judgeflow(['run', specPath, '--label', 'killed', '--set', 'endpoints.judge-a.revision=killed', '--set', 'endpoints.judge-b.revision=killed']);
    const runId = (await run.waitFor(/run (\S+): started/))[1]!;

    // Kill the default-queue worker that is running an inference chunk of `main`, once some of it is done.
    const byIdentity = new Map([workers.a!, workers.b!].map((w) => [w.identity, w]));
    const deadline = Date.now() + 90_000;
    let victim: Worker | undefined;
    let doneAtKill = 0;
    while (!victim) {
      if (Date.now() > deadline) throw new Error(`no inference chunk of "main" seen running on a default-queue worker; run output:\n${run.output()}`);
      doneAtKill = (await resultCounts(db, runId, 'main')).results;
      if (doneAtKill >= PER_STAGE / 5) {
        const desc = await client.workflow.getHandle(`${runId}/main`).describe();
        const running = (desc.raw.pendingActivities ?? []).find(
          (p) => p.activityType?.name === 'executeRequests' && byIdentity.has(p.lastWorkerIdentity ?? '') && Number(p.state) === 2,
        );
        if (running) victim = byIdentity.get(running.lastWorkerIdentity!);
      }
      if (!victim) await new Promise((r) => setTimeout(r, 100));
    }
    victim.proc.child.kill('SIGKILL');
    await victim.proc.exit;
    expect(doneAtKill).toBeLessThan(PER_STAGE);
    const survivor = victim === workers.a ? workers.b! : workers.a!;

    const code = await run.exit;
    expect(code, run.output()).toBe(0);
    const runRow = await db.pool.query('select status from runs where id = $1', [runId]);
    expect(runRow.rows).toEqual([{ status: 'succeeded' }]);

    // Nothing lost: every request has its result, every item its judgments, and the run concludes
    // exactly what the uninterrupted run with the same seed concluded.
    expect(await resultCounts(db, runId, 'main')).toEqual({ results: PER_STAGE, succeeded: PER_STAGE });
    expect(await resultCounts(db, runId, 'pool')).toEqual({ results: PER_STAGE, succeeded: PER_STAGE });
    const got = await conclusions(db, runId);
    const want = await conclusions(db, reference.runId);
    expect(got.judgments).toHaveLength(2 * PER_STAGE);
    expect(got.judgments.filter((j: { status: string }) => j.status === 'failed')).toEqual([]);
    expect(got.metrics.length).toBeGreaterThan(20);
    expect(got).toEqual(want);

    // Paid twice: only what the killed worker had sent but not yet written, at most its concurrency.
    const sent = requests() - before;
    expect(sent).toBeGreaterThanOrEqual(2 * PER_STAGE);
    expect(sent).toBeLessThanOrEqual(2 * PER_STAGE + CONCURRENCY_A);

    // The killed worker's chunk was retried on the survivor.
    const main = await whoRanWhat(client, `${runId}/main`);
    const retried = main.activities.filter((r) => r.type === 'executeRequests' && r.attempt > 1);
    expect(retried.length).toBeGreaterThan(0);
    expect(retried.every((r) => r.identity === survivor.identity)).toBe(true);
    const pool = await whoRanWhat(client, `${runId}/pool`);
    expect(new Set(pool.activities.filter((r) => r.type === 'executeRequests').map((r) => r.identity))).toEqual(new Set([workers.gpu!.identity]));
  }, 240_000);
});
