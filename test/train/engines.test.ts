/**
 * The `train` stage on real engines: a local Ray head (Jobs REST API; scripts/ray-head.sh) and a
 * single-node Slurm (scripts/start-slurm.sh). Each runs the real TRL job end to end and a cancelled
 * run; on Ray, the head is restarted while a job runs and the `on_lost` policy is followed.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RayBackend } from '../../activities/train/ray.js';
import { SlurmBackend } from '../../activities/train/slurm.js';
import { launchRun } from '../../cli/launch.js';
import type { DbHandle } from '../../db/client.js';
import '../../spec/builtin.js';
import type { RunningWorker } from '../../worker.js';
import { REPO, openTestDb, testClient, uniqueName } from '../helpers/env.js';
import { specFromObject } from '../helpers/spec.js';
import { fakeTrainerArgv, jobRows, PYTHON, requireSmolLM2, runResult, SFT_FIXTURE, SMOLLM2, startTrainWorker, waitFor } from './helpers.js';

const RAY = process.env.JF_RAY_ADDRESS ?? 'http://127.0.0.1:8265';
const REAL_HP = { max_steps: 2, per_device_train_batch_size: 2, learning_rate: 1e-4, threads: 1 };
let db: DbHandle;
let client: Client;
let closeClient: () => Promise<void>;
let worker: RunningWorker;
const tq = uniqueName('train-engines');

beforeAll(async () => {
  db = await openTestDb();
  ({ client, close: closeClient } = await testClient());
  worker = await startTrainWorker(tq, { stateDir: mkdtempSync(join(tmpdir(), 'jf-train-engines-')) });
});
afterAll(async () => {
  await worker?.shutdown();
  await closeClient?.();
  await db?.close();
});

function spec(name: string, train: Record<string, unknown>) {
  return {
    name,
    seed: 5,
    stages: [
      { id: 'sft', uses: 'test-sft', with: { path: SFT_FIXTURE } },
      { id: 'train', uses: 'train', needs: ['sft'], with: { data: { from: 'sft' }, base_model: SMOLLM2, python: PYTHON, poll_s: 1, ...train } },
    ],
  };
}

async function checkpointOf(runId: string) {
  const rows = (
    await db.pool.query<{ id: number; summary: { files: Record<string, string>; final_metrics: { steps: number }; backend: string } }>(
      `select id, summary from artifacts where run_id = $1 and stage_id = 'train' and kind = 'checkpoint'`,
      [runId],
    )
  ).rows;
  return rows[0];
}

describe('ray: a local head, Jobs REST API', () => {
  const ray = new RayBackend(RAY);
  beforeAll(() => {
    execFileSync(join(REPO, 'scripts', 'ray-head.sh'), ['start'], { stdio: 'inherit' });
  }, 180_000);

  it("runs the real TRL job: one submission in the head's job list, checkpoint recorded", async () => {
    requireSmolLM2();
    const loaded = await specFromObject(spec(uniqueName('train-ray'), { backend: { type: 'ray', address: RAY }, hyperparams: REAL_HP }));
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    expect(await runResult(client, runId)).toEqual({ ok: true });
    const [job] = await jobRows(db.pool, runId);
    expect(job).toMatchObject({ backend: 'ray', state: 'succeeded', job_id: job!.job_key });
    expect((await ray.list()).filter((id) => id === job!.job_key)).toHaveLength(1);
    expect(await ray.status(job!.job_id!)).toMatchObject({ state: 'succeeded', exitCode: 0 });
    const ckpt = await checkpointOf(runId);
    expect(ckpt!.summary).toMatchObject({ backend: 'ray', final_metrics: { steps: 2 } });
    expect(Object.keys(ckpt!.summary.files)).toContain('model.safetensors');
  }, 900_000);

  it('a cancelled run stops the job at the head (its status says STOPPED)', async () => {
    const loaded = await specFromObject(spec(uniqueName('train-ray-cancel'), { backend: { type: 'ray', address: RAY }, command: fakeTrainerArgv(600, 500) }));
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    const running = await waitFor('the Ray job to run', 180_000, async () => (await jobRows(db.pool, runId)).find((j) => j.state === 'running'));
    await client.workflow.getHandle(runId).cancel();
    await waitFor('Ray to stop the job', 60_000, async () => (await ray.status(running.job_id!)).state === 'cancelled');
    await waitFor('the cancel to be recorded', 30_000, async () => (await jobRows(db.pool, runId))[0]!.state === 'cancelled');
  }, 300_000);

  it('the head restarts while the job runs: the job is lost (404), resubmitted once as on_lost says, and completes', async () => {
    const loaded = await specFromObject(
      spec(uniqueName('train-ray-lost'), { backend: { type: 'ray', address: RAY }, command: fakeTrainerArgv(20, 1000), on_lost: 'resubmit', max_resubmits: 1 }),
    );
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    const first = await waitFor('the Ray job to run', 180_000, async () => (await jobRows(db.pool, runId)).find((j) => j.state === 'running'));
    execFileSync(join(REPO, 'scripts', 'ray-head.sh'), ['restart'], { stdio: 'inherit' });
    expect(await runResult(client, runId)).toEqual({ ok: true });
    const jobs = await jobRows(db.pool, runId);
    expect(jobs.map((j) => [j.attempt, j.state])).toEqual([
      [0, 'lost'],
      [1, 'succeeded'],
    ]);
    expect(jobs[0]!.job_key).toBe(first.job_key);
    expect(jobs[0]!.events.at(-1)!.message).toMatch(/does not know job .* \(restarted\?\)/);
    expect(jobs[1]!.events[0]).toMatchObject({ state: 'submitted' });
    expect(jobs[1]!.events[0]!.message).toMatch(/^resubmitted \(on_lost: resubmit, 1 of 1\): attempt 0 was lost/);
    // The new head knows only the resubmitted job.
    expect(await ray.list()).toContain(jobs[1]!.job_key);
    expect(await ray.list()).not.toContain(jobs[0]!.job_key);
  }, 600_000);

  it('with on_lost: fail, a lost job fails the stage and says why', async () => {
    const loaded = await specFromObject(
      spec(uniqueName('train-ray-fail'), { backend: { type: 'ray', address: RAY }, command: fakeTrainerArgv(60, 1000), on_lost: 'fail' }),
    );
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    await waitFor('the Ray job to run', 180_000, async () => (await jobRows(db.pool, runId)).find((j) => j.state === 'running'));
    execFileSync(join(REPO, 'scripts', 'ray-head.sh'), ['restart'], { stdio: 'inherit' });
    const res = await runResult(client, runId);
    expect(res.ok).toBe(false);
    const [stage] = (
      await db.pool.query<{ status: string; error: string }>(`select status, error from stages where run_id = $1 and stage_id = 'train'`, [runId])
    ).rows;
    expect(stage!.status).toBe('failed');
    expect(stage!.error).toMatch(/was lost by the ray backend: .*does not know job.*; on_lost: fail/);
    expect((await jobRows(db.pool, runId)).map((j) => j.state)).toEqual(['lost']);
  }, 600_000);
});

describe('slurm: a single node (sbatch / squeue / scontrol / scancel)', () => {
  const slurm = new SlurmBackend({ prefix: [] });
  beforeAll(() => {
    execFileSync(join(REPO, 'scripts', 'start-slurm.sh'), { stdio: 'inherit' });
  }, 120_000);

  it('runs the real TRL job: one job of that name in squeue, checkpoint recorded', async () => {
    requireSmolLM2();
    const loaded = await specFromObject(spec(uniqueName('train-slurm'), { backend: { type: 'slurm', cpus: 1, mem: '6G' }, hyperparams: REAL_HP }));
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    expect(await runResult(client, runId)).toEqual({ ok: true });
    const [job] = await jobRows(db.pool, runId);
    expect(job).toMatchObject({ backend: 'slurm', state: 'succeeded' });
    expect(job!.job_id).toMatch(/^\d+$/);
    expect((await slurm.list()).filter((l) => l.endsWith(` ${job!.job_key}`))).toEqual([`${job!.job_id} ${job!.job_key}`]);
    expect(await slurm.status(job!.job_id!)).toMatchObject({ state: 'succeeded', exitCode: 0 });
    const ckpt = await checkpointOf(runId);
    expect(ckpt!.summary).toMatchObject({ backend: 'slurm', final_metrics: { steps: 2 } });
  }, 900_000);

  it('a cancelled run scancels the job (scontrol says CANCELLED)', async () => {
    const loaded = await specFromObject(
      spec(uniqueName('train-slurm-cancel'), { backend: { type: 'slurm', cpus: 1, mem: '1G' }, command: fakeTrainerArgv(600, 500) }),
    );
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    const running = await waitFor('the Slurm job to run', 180_000, async () => (await jobRows(db.pool, runId)).find((j) => j.state === 'running'));
    await client.workflow.getHandle(runId).cancel();
    await waitFor('Slurm to cancel the job', 60_000, async () => (await slurm.status(running.job_id!)).state === 'cancelled');
    const out = execFileSync('scontrol', ['show', 'job', '--oneliner', running.job_id!], { encoding: 'utf8' });
    expect(out).toMatch(/JobState=CANCELLED/);
    await waitFor('the cancel to be recorded', 30_000, async () => (await jobRows(db.pool, runId))[0]!.state === 'cancelled');
  }, 300_000);

  it("sbatch refusing the job (a partition that does not exist) fails the stage with Slurm's message, recorded on the job", async () => {
    const loaded = await specFromObject(
      spec(uniqueName('train-slurm-refused'), { backend: { type: 'slurm', partition: 'no-such-partition' }, command: fakeTrainerArgv(1, 10) }),
    );
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    expect((await runResult(client, runId)).ok).toBe(false);
    const [stage] = (
      await db.pool.query<{ status: string; error: string }>(`select status, error from stages where run_id = $1 and stage_id = 'train'`, [runId])
    ).rows;
    expect(stage!.status).toBe('failed');
    expect(stage!.error).toMatch(/the slurm backend refused job jf-[0-9a-f]{16}-a0: sbatch refused job .*invalid partition/i);
    const [job] = await jobRows(db.pool, runId);
    expect(job).toMatchObject({ state: 'failed', job_id: null });
    expect(job!.error).toMatch(/invalid partition/i);
  });
});
