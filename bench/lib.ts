/** Shared plumbing of the benchmarks: a simulator in its own process, a scratch database, Temporal. */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Worker } from '@temporalio/worker';
import { openDb, type Db } from '../db/client.js';
import { applyMigrations } from '../db/migrate.js';
import { createInferenceActivities, type InferenceGateway } from '../activities/inference/index.js';
import { startWorker } from '../worker.js';
import { findTemporalCli } from '../runtime/temporal-cli.js';
import { freePort, waitForTcp } from '../runtime/net.js';

export const REPO = fileURLToPath(new URL('..', import.meta.url));

/** Cleanups run in reverse order at the end, whatever happened. */
export class Cleanups {
  private readonly fns: (() => Promise<void> | void)[] = [];
  add(fn: () => Promise<void> | void): void {
    this.fns.push(fn);
  }
  async run(): Promise<void> {
    for (const fn of this.fns.reverse()) await fn();
  }
}

/** The simulator in a child process (so it does not share the benchmark's event loop). */
export async function spawnSimulator(config: unknown, cleanups: Cleanups): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'jf-bench-sim-'));
  const configPath = join(dir, 'sim.json');
  writeFileSync(configPath, JSON.stringify(config));
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'sim', 'main.ts'), '--port', '0', '--config', configPath], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.once('exit', (code) => reject(new Error(`simulator exited (${code}): ${out}`)));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
  });
  child.removeAllListeners('exit');
  cleanups.add(async () => {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  return url;
}

/** TEMPORAL_ADDRESS, or a dev server started for the benchmark. */
export async function temporalAddress(cleanups: Cleanups): Promise<string> {
  if (process.env.TEMPORAL_ADDRESS) return process.env.TEMPORAL_ADDRESS;
  const port = await freePort();
  const server = spawn(findTemporalCli(), ['server', 'start-dev', '--headless', '--port', String(port), '--log-level', 'error'], { stdio: 'ignore' });
  cleanups.add(() => void server.kill('SIGTERM'));
  await waitForTcp('127.0.0.1', port, 30_000);
  return `127.0.0.1:${port}`;
}

/** A database created for the benchmark on DATABASE_URL's server, dropped at the end. */
export async function temporaryDatabase(cleanups: Cleanups): Promise<string> {
  const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const name = `judgeflow_bench_${Date.now()}_${process.pid}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database "${name}"`);
  await admin.end();
  cleanups.add(async () => {
    const a = new pg.Client({ connectionString: adminUrl });
    await a.connect();
    await a.query(`drop database if exists "${name}" with (force)`);
    await a.end();
  });
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export const quietLogger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} } as never;

/**
 * Watches the event loop's lag (how late a 5 ms timer fires) until the returned function is
 * called; it returns "event-loop lag p50 …, p99 …, max … ms".
 */
export function watchEventLoop(): () => string {
  const resolutionMs = 5;
  const h = monitorEventLoopDelay({ resolution: resolutionMs });
  h.enable();
  return () => {
    h.disable();
    const lag = (ns: number) => Math.max(0, ns / 1e6 - resolutionMs).toFixed(1);
    return `event-loop lag p50 ${lag(h.percentile(50))} ms, p99 ${lag(h.percentile(99))} ms, max ${lag(h.max)} ms`;
  };
}

/**
 * Scratch database (migrated), Temporal and a client, the simulator with `simulator` as its config,
 * and the worker users run (worker.ts, the production workflows) on a fresh task queue.
 */
export async function startJudgeflowBench(cleanups: Cleanups, opts: { name: string; simulator: unknown }) {
  const dbUrl = await temporaryDatabase(cleanups);
  const handle = openDb(dbUrl);
  cleanups.add(() => handle.close());
  await applyMigrations(handle.db);
  const address = await temporalAddress(cleanups);
  const url = await spawnSimulator(opts.simulator, cleanups);
  const connection = await Connection.connect({ address });
  cleanups.add(() => connection.close());
  const client = new Client({ connection });
  const taskQueue = `bench-${opts.name}-${Date.now()}`;
  const worker = await startWorker({
    databaseUrl: dbUrl,
    temporalAddress: address,
    namespace: 'default',
    taskQueue,
    workflowBundle: await bundleWorkflowCode({ workflowsPath: join(REPO, 'workflows', 'index.ts'), logger: quietLogger }),
  });
  cleanups.add(() => worker.shutdown());
  return { handle, url, client, taskQueue };
}

/**
 * What the inference benchmarks share: a scratch database (migrated), a Temporal client, and an
 * in-process worker running `runInference` (test/inference/workflows.ts) with `gateway`.
 */
export async function startInferenceBench(cleanups: Cleanups, opts: { name: string; gateway: InferenceGateway }) {
  return startScratchWorker(cleanups, {
    name: opts.name,
    workflowsPath: join(REPO, 'test', 'inference', 'workflows.ts'),
    activities: (db) => createInferenceActivities({ db, gateway: opts.gateway }),
  });
}

/**
 * A scratch database (migrated), a Temporal client, and an in-process worker (no supervisor, no
 * production defaults) with `activities` over that database and the workflows at `workflowsPath`.
 */
export async function startScratchWorker(cleanups: Cleanups, opts: { name: string; workflowsPath: string; activities: (db: Db) => object; pool?: number }) {
  const dbUrl = await temporaryDatabase(cleanups);
  const handle = openDb(dbUrl, { max: opts.pool ?? 10 });
  cleanups.add(() => handle.close());
  await applyMigrations(handle.db);
  const address = await temporalAddress(cleanups);
  const connection = await Connection.connect({ address });
  cleanups.add(() => connection.close());
  const client = new Client({ connection });
  const nativeConnection = await NativeConnection.connect({ address });
  const taskQueue = `bench-${opts.name}-${Date.now()}`;
  const worker = await Worker.create({
    connection: nativeConnection,
    taskQueue,
    workflowBundle: await bundleWorkflowCode({ workflowsPath: opts.workflowsPath, logger: quietLogger }),
    activities: opts.activities(handle.db),
  });
  const running = worker.run();
  cleanups.add(async () => {
    worker.shutdown();
    await running;
    await nativeConnection.close();
  });
  return { db: handle.db, handle, dbUrl, client, taskQueue, address };
}
