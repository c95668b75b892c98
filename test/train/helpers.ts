import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { Client } from '@temporalio/client';
import type pg from 'pg';
import { createTestActivities } from '../helpers/test-activities.js';
import { REPO, testDatabaseUrl, testTemporalAddress } from '../helpers/env.js';
import { startWorker, type RunningWorker } from '../../worker.js';
import { createTrainTestActivities } from './activities.js';
import './kinds.js';

export const TRAIN_WORKFLOWS = join(REPO, 'test', 'train', 'workflows.ts');
export const FIXTURES = join(REPO, 'test', 'train', 'fixtures');
export const SFT_FIXTURE = join(FIXTURES, 'sft-judge.jsonl');
/** The base model the real-trainer tests use (scripts/prepare-smollm2.py). */
export const SMOLLM2 = process.env.JF_SMOLLM2_DIR ?? join(REPO, '.cache', 'models', 'smollm2-135m-instruct');
export const PYTHON = process.env.JF_PYTHON ?? 'python3';

export function requireSmolLM2(): void {
  if (!existsSync(join(SMOLLM2, 'config.json')))
    throw new Error(`no SmolLM2 folder at ${SMOLLM2}: run python3 scripts/prepare-smollm2.py (needs requirements.txt installed)`);
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;
export function trainBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath: TRAIN_WORKFLOWS, logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} } as never });
  return bundle;
}

export async function startTrainWorker(taskQueue: string, opts: { stateDir: string; maxActivities?: number }): Promise<RunningWorker> {
  return startWorker({
    temporalAddress: testTemporalAddress(),
    namespace: 'default',
    taskQueue,
    databaseUrl: testDatabaseUrl(),
    workflowBundle: await trainBundle(),
    extraActivities: (h) => ({ ...createTestActivities(h.db), ...createTrainTestActivities(h.db) }),
    maxConcurrentActivityTaskExecutions: opts.maxActivities,
    trainStateDir: opts.stateDir,
  });
}

/** A train-test worker in its own process (so a test can kill -9 it). */
export function spawnTrainWorker(taskQueue: string, stateDir: string): Promise<ChildProcess> {
  const tsx = import.meta.resolve('tsx');
  const proc = spawn(process.execPath, ['--import', tsx, join(REPO, 'test', 'train', 'worker-child.ts')], {
    env: { ...process.env, DATABASE_URL: testDatabaseUrl(), TEMPORAL_ADDRESS: testTemporalAddress(), TASK_QUEUE: taskQueue, JUDGEFLOW_STATE_DIR: stateDir },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`train worker child exited early (${code})`)));
    proc.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('worker-ready')) resolve(proc);
    });
  });
}

/** Polls `fn` every 250 ms until it returns a value other than undefined/false, or `ms` passes. */
export async function waitFor<T>(what: string, ms: number, fn: () => Promise<T | undefined | false>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface JobRow {
  attempt: number;
  backend: string;
  job_key: string;
  job_id: string | null;
  state: string;
  attached: number;
  events: { state: string; at: string; message?: string }[];
  log_tail: string;
  output_dir: string;
  error: string | null;
}

export async function jobRows(pool: pg.Pool, runId: string, stageId = 'train'): Promise<JobRow[]> {
  return (
    await pool.query<JobRow>(
      'select attempt, backend, job_key, job_id, state, attached, events, log_tail, output_dir, error from train_jobs where run_id = $1 and stage_id = $2 order by attempt',
      [runId, stageId],
    )
  ).rows;
}

export async function runResult(client: Client, runId: string): Promise<{ ok: boolean; error?: string }> {
  try {
    await client.workflow.getHandle(runId).result();
    return { ok: true };
  } catch (err) {
    return { ok: false, error: String((err as Error).message) };
  }
}

/** A stand-in trainer (argv) that logs a metrics line every `stepMs` for `steps` steps, then writes a checkpoint. */
export function fakeTrainerArgv(steps: number, stepMs: number, exitCode = 0): string[] {
  const py = [
    'import json, os, sys, time',
    'cfg = json.load(open(sys.argv[1]))',
    `for s in range(1, ${steps} + 1):`,
    `    time.sleep(${stepMs / 1000})`,
    "    open(cfg['metrics'], 'a').write(json.dumps({'step': s, 'loss': 2.0 / s}) + '\\n')",
    "    print('step', s, flush=True)",
    "os.makedirs(cfg['output'], exist_ok=True)",
    "open(os.path.join(cfg['output'], 'weights.bin'), 'wb').write(b'w' * 64)",
    `sys.exit(${exitCode})`,
  ].join('\n');
  return [PYTHON, '-c', py, '{config}'];
}
