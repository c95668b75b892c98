/**
 * The `train` stage on the `process` backend: the real TRL job end to end (with a kill -9 of the
 * worker while it trains), a trainer that exits 3, a cancelled run, and a waiting stage that holds
 * no worker slot. Temporal dev server, Postgres, real processes.
 */
import { createHash } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessBackend } from '../../activities/train/process.js';
import { trainingDoneSignal } from '../../workflows/stages/train.js';
import { launchRun } from '../../cli/launch.js';
import type { DbHandle } from '../../db/client.js';
import '../../spec/builtin.js';
import type { RunningWorker } from '../../worker.js';
import { openTestDb, testClient, uniqueName } from '../helpers/env.js';
import { specFromObject } from '../helpers/spec.js';
import { fakeTrainerArgv, jobRows, PYTHON, requireSmolLM2, runResult, SFT_FIXTURE, SMOLLM2, spawnTrainWorker, startTrainWorker, waitFor } from './helpers.js';

let db: DbHandle;
let client: Client;
let closeClient: () => Promise<void>;
const stateDir = mkdtempSync(join(tmpdir(), 'jf-train-state-'));
const jobsDir = join(stateDir, 'jobs');
const backend = new ProcessBackend(jobsDir);

beforeAll(async () => {
  db = await openTestDb();
  ({ client, close: closeClient } = await testClient());
});
afterAll(async () => {
  await closeClient?.();
  await db?.close();
});

const q = async <T extends Record<string, unknown>>(text: string, params: unknown[] = []) => (await db.pool.query<T>(text, params)).rows;

function trainSpec(name: string, train: Record<string, unknown>, extra: Record<string, unknown>[] = []) {
  return {
    name,
    seed: 5,
    stages: [
      { id: 'sft', uses: 'test-sft', with: { path: SFT_FIXTURE } },
      { id: 'train', uses: 'train', needs: ['sft'], with: { data: { from: 'sft' }, base_model: SMOLLM2, python: PYTHON, poll_s: 1, ...train } },
      ...extra,
    ],
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the real TRL SFT job on the process backend, with the worker killed -9 while it trains', () => {
  const tq = uniqueName('train-proc');
  let child: ChildProcess | undefined;
  let worker: RunningWorker | undefined;
  afterAll(async () => {
    child?.kill('SIGKILL');
    await worker?.shutdown();
  });

  it('submits once, re-attaches after the crash, records states, metrics, the checkpoint and its lineage', async () => {
    requireSmolLM2();
    const loaded = await specFromObject(
      trainSpec(uniqueName('train-real'), { hyperparams: { max_steps: 3, per_device_train_batch_size: 2, learning_rate: 1e-4 } }),
    );
    child = await spawnTrainWorker(tq, stateDir);
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    // Kill the worker once the job runs (its id is in Postgres before the stage waits).
    const running = await waitFor('the job to run', 300_000, async () => (await jobRows(db.pool, runId)).find((j) => j.job_id && j.state === 'running'));
    child.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    child = undefined;
    const before = await backend.list();
    expect(before).toContain(running.job_key);
    worker = await startTrainWorker(tq, { stateDir });
    const res = await runResult(client, runId);
    expect(res).toEqual({ ok: true });

    // Exactly one submission: the backend's own job list holds one job of this run, attempt 0.
    const jobs = await jobRows(db.pool, runId);
    expect(jobs).toHaveLength(1);
    const job = jobs[0]!;
    expect((await backend.list()).filter((k) => k.startsWith(job.job_key.replace(/-a\d+$/, '')))).toEqual([job.job_key]);
    expect(job).toMatchObject({ attempt: 0, backend: 'process', job_id: job.job_key, state: 'succeeded' });
    expect(job.events.map((e) => e.state)).toEqual(['submitted', 'running', 'succeeded']);
    const times = job.events.map((e) => Date.parse(e.at));
    expect(times.every((t, i) => i === 0 || t >= times[i - 1]!)).toBe(true);
    expect(job.log_tail).toMatch(/sft\.py: wrote .*checkpoint \(3 steps/);

    const metrics = await q<{ step: number; loss: number }>('select step, loss from train_metrics where run_id = $1 and stage_id = $2 order by step', [
      runId,
      'train',
    ]);
    expect(metrics.map((m) => m.step)).toEqual([1, 2, 3]);
    for (const m of metrics) expect(m.loss).toBeGreaterThan(0);

    // The checkpoint artifact: URI, digests that match the files, lineage to the sft-set.
    const [ckpt] = await q<{
      id: number;
      source: string;
      rows: number;
      summary: {
        uri: string;
        files: Record<string, string>;
        sft_set: number;
        base_model: string;
        hyperparams: Record<string, unknown>;
        final_metrics: { steps: number; final_loss: number };
      };
    }>(`select id, source, rows, summary from artifacts where run_id = $1 and stage_id = 'train' and kind = 'checkpoint'`, [runId]);
    expect(ckpt).toBeDefined();
    const dir = ckpt!.summary.uri.replace(/^file:\/\//, '');
    expect(Object.keys(ckpt!.summary.files)).toEqual(expect.arrayContaining(['model.safetensors', 'config.json', 'tokenizer.json', 'judgeflow-train.json']));
    const weights = createHash('sha256')
      .update(readFileSync(join(dir, 'model.safetensors')))
      .digest('hex');
    expect(ckpt!.summary.files['model.safetensors']).toBe(weights);
    expect(ckpt!.summary).toMatchObject({ base_model: SMOLLM2, hyperparams: { max_steps: 3 }, final_metrics: { steps: 3, final_loss: metrics[2]!.loss } });
    // Lineage in SQL: checkpoint → the sft-set it was trained on → the file it came from.
    const lineage = await q<{ checkpoint: number; sft_set: number; sft_source: string; job_id: string }>(
      `select c.id as checkpoint, s.id as sft_set, s.source as sft_source, j.job_id
       from artifacts c join artifact_parents p on p.artifact_id = c.id join artifacts s on s.id = p.parent_id and s.kind = 'sft-set'
       join train_jobs j on j.run_id = c.run_id and j.stage_id = c.stage_id and j.attempt = (c.summary->>'attempt')::int
       where c.id = $1`,
      [ckpt!.id],
    );
    expect(lineage).toEqual([{ checkpoint: ckpt!.id, sft_set: ckpt!.summary.sft_set, sft_source: SFT_FIXTURE, job_id: job.job_id }]);
  }, 900_000);
});

describe('failures and cancellation', () => {
  const tq = uniqueName('train-fail');
  let worker: RunningWorker;
  beforeAll(async () => {
    worker = await startTrainWorker(tq, { stateDir, maxActivities: 1 });
  });
  afterAll(async () => {
    await worker?.shutdown();
  });

  it('a trainer that exits 3: the stage fails with the log tail in its error, dependents are skipped', async () => {
    const loaded = await specFromObject(
      trainSpec(
        uniqueName('train-exit3'),
        { command: [PYTHON, '-c', "import sys; print('loading 48 rows'); print('RuntimeError: the trainer gave up', file=sys.stderr); sys.exit(3)"] },
        [{ id: 'after', uses: 'test-work', needs: ['train'], with: { items: 2, ms: 10 } }],
      ),
    );
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    const res = await runResult(client, runId);
    expect(res.ok).toBe(false);
    const stages = await q<{ stage_id: string; status: string; error: string | null }>(
      'select stage_id, status, error from stages where run_id = $1 order by stage_id',
      [runId],
    );
    const train = stages.find((s) => s.stage_id === 'train')!;
    expect(train.status).toBe('failed');
    expect(train.error).toContain('failed (exit code 3)');
    expect(train.error).toContain('--- log tail ---');
    expect(train.error).toContain('loading 48 rows');
    expect(train.error).toContain('RuntimeError: the trainer gave up');
    expect(stages.find((s) => s.stage_id === 'after')).toMatchObject({ status: 'skipped' });
    const [job] = await jobRows(db.pool, runId);
    expect(job!.state).toBe('failed');
    expect(job!.events.at(-1)).toMatchObject({ state: 'failed', message: 'the trainer exited with code 3' });
  });

  it('while a job trains, a worker with one activity slot runs another stage; cancelling the run stops the job', async () => {
    const loaded = await specFromObject(
      trainSpec(uniqueName('train-cancel'), { command: fakeTrainerArgv(600, 500) }, [
        { id: 'other', uses: 'test-work', needs: ['sft'], with: { items: 6, ms: 200, batch: 1 } },
      ]),
    );
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    const running = await waitFor('the job to run', 120_000, async () => (await jobRows(db.pool, runId)).find((j) => j.state === 'running'));
    // The other stage needs the one slot six times while the train stage waits.
    await waitFor(
      'the other stage to finish',
      120_000,
      async () => (await q<{ status: string }>(`select status from stages where run_id = $1 and stage_id = 'other'`, [runId]))[0]?.status === 'succeeded',
    );
    expect((await jobRows(db.pool, runId))[0]!.state).toBe('running');
    expect((await backend.status(running.job_id!)).state).toBe('running');
    const pid = Number(readFileSync(join(jobsDir, running.job_id!, 'pid'), 'utf8'));
    expect(alive(pid)).toBe(true);

    // Cancel once the stage has recorded some of the job's metrics (its status checks read them).
    await waitFor(
      'metrics from the job',
      120_000,
      async () => (await q<{ n: number }>('select count(*)::int as n from train_metrics where run_id = $1', [runId]))[0]!.n > 0,
    );
    await client.workflow.getHandle(runId).cancel();
    await waitFor('the job to stop', 60_000, async () => (await backend.status(running.job_id!)).state === 'cancelled');
    expect(existsSync(join(jobsDir, running.job_id!, 'exit'))).toBe(true);
    await waitFor('the runner to exit', 30_000, async () => !alive(pid));
    const [job] = await jobRows(db.pool, runId);
    await waitFor('the cancel to be recorded', 30_000, async () => (await jobRows(db.pool, runId))[0]!.state === 'cancelled');
    expect(job).toBeDefined();
    const events = (await jobRows(db.pool, runId))[0]!.events;
    expect(events.at(-1)).toMatchObject({ state: 'cancelled', message: 'the run was cancelled' });
    // The metrics it wrote before the cancel are kept; the run is cancelled.
    expect((await q<{ n: number }>('select count(*)::int as n from train_metrics where run_id = $1', [runId]))[0]!.n).toBeGreaterThan(0);
    // The run is marked cancelled once the experiment workflow has seen its stages stop.
    await waitFor(
      'the run to be cancelled',
      60_000,
      async () => (await q<{ status: string }>('select status from runs where id = $1', [runId]))[0]!.status === 'cancelled',
    );
  });

  it('the trainingDone signal makes a stage with a 10-minute poll interval check at once', async () => {
    const loaded = await specFromObject(trainSpec(uniqueName('train-signal'), { command: fakeTrainerArgv(3, 1500), poll_s: 600 }));
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    const job = await waitFor('the job to be submitted', 60_000, async () => (await jobRows(db.pool, runId)).find((j) => j.job_id));
    await waitFor('the job to end', 60_000, async () => (await backend.status(job.job_id!)).state === 'succeeded');
    // Without the signal the stage would sleep another ~10 minutes.
    expect((await jobRows(db.pool, runId))[0]!.state).not.toBe('succeeded');
    const signalled = Date.now();
    await client.workflow.getHandle(`${runId}/train`).signal(trainingDoneSignal);
    expect(await runResult(client, runId)).toEqual({ ok: true });
    expect(Date.now() - signalled).toBeLessThan(120_000);
    const [row] = await jobRows(db.pool, runId);
    expect(row!.events.map((e) => e.state).at(-1)).toBe('succeeded');
    expect((await q<{ n: number }>('select count(*)::int as n from train_metrics where run_id = $1', [runId]))[0]!.n).toBe(3);
  });

  it('a job past timeout_s is cancelled at the backend and the stage fails saying so', async () => {
    const loaded = await specFromObject(trainSpec(uniqueName('train-timeout'), { command: fakeTrainerArgv(600, 500), timeout_s: 4 }));
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    const res = await runResult(client, runId);
    expect(res.ok).toBe(false);
    const [stage] = await q<{ status: string; error: string }>(`select status, error from stages where run_id = $1 and stage_id = 'train'`, [runId]);
    expect(stage).toMatchObject({ status: 'failed' });
    expect(stage!.error).toMatch(/ran past timeout_s = 4: cancelled/);
    const [job] = await jobRows(db.pool, runId);
    expect(job!.events.at(-1)).toMatchObject({ state: 'timed_out', message: 'timeout_s 4 reached' });
    await waitFor('the job to stop', 60_000, async () => (await backend.status(job!.job_id!)).state === 'cancelled');
  });
});
