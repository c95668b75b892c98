/**
 * The local stack the CLI brings up: Postgres (embedded unless DATABASE_URL is set), Temporal
 * (dev server unless TEMPORAL_ADDRESS is set) and a judgeflow worker. Every service runs detached
 * and is recorded under `<stateDir>/run/`, so the CLI can exit with the stack still up, a later
 * `up` reuses it, and `down` stops it.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Connection } from '@temporalio/client';
import pg from 'pg';
import { redactUrl, type RuntimeConfig } from './config.js';
import {
  liveRecord,
  logDir,
  logTail,
  processStartTicks,
  readRecord,
  recordAlive,
  removeRecord,
  spawnDetached,
  StackError,
  stopRecorded,
  withStackLock,
  writeRecord,
  type ServiceRecord,
} from './daemon.js';
import { ensurePostgres, preflightPostgres, prepareStateDir, stopPostgres } from './embedded-postgres.js';
import { ensureTemporal, preflightTemporal, probeTemporal, stopTemporal } from './temporal-server.js';
import { launcherSocketPath } from './launcher-client.js';

export { RuntimeConfigError, loadRuntimeConfig, type RuntimeConfig } from './config.js';
export { PortInUseError, StackError } from './daemon.js';
export { TemporalCliNotFoundError } from './temporal-cli.js';

/** Where the stack's services answer, and which of them this call started or found running. */
export interface StackInfo {
  databaseUrl: string;
  temporalAddress: string;
  /** The Temporal Web UI, when the dev server runs with one. */
  temporalUiUrl?: string;
  started: { postgres: boolean; temporal: boolean; worker: boolean };
  reused: { postgres: boolean; temporal: boolean; worker: boolean };
}

export interface UpOptions {
  /** Start (or reuse) a worker process; default true. */
  worker?: boolean;
  /** The worker command; default `node <repo>/bin/worker.mjs` (compiled dist/ when fresh), run in the repo root. */
  workerCommand?: string[];
  /** How long to wait for the worker to poll the task queue; default 60 s. */
  workerReadyTimeoutMs?: number;
  /** Progress lines for the user (secrets masked). */
  log?: (line: string) => void;
  /**
   * Names of environment variables the worker must have (a spec's `api_key_env`s). A name set in
   * this process but absent from (or different in) the running worker's environment restarts the
   * worker with this process's environment; a name set in neither throws WorkerEnvError. Values
   * travel only through process environments: nothing is written to disk.
   */
  workerEnv?: { name: string; usedBy: string }[];
}

/** A variable the worker needs (an endpoint's `api_key_env`) is set neither here nor in the worker. */
export class WorkerEnvError extends StackError {
  override readonly name = 'WorkerEnvError';
}

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** bin/worker.mjs runs dist/worker.js with the prebuilt workflow bundle, or worker.ts through tsx when dist/ is stale. */
export function defaultWorkerCommand(): string[] {
  return [process.execPath, join(REPO_ROOT, 'bin', 'worker.mjs')];
}

/** `command` run under runtime/supervisor (via bin/supervisor.mjs: compiled when fresh), which restarts it when it dies. */
export function supervisedCommand(command: string[]): string[] {
  return [process.execPath, join(REPO_ROOT, 'bin', 'supervisor.mjs'), '--', ...command];
}

const quiet = () => undefined;

/**
 * Brings the stack up and waits until every service answers. Idempotent: services already
 * running for this state dir are reused (and reported in `reused`).
 */
export async function up(cfg: RuntimeConfig, opts: UpOptions = {}): Promise<StackInfo> {
  const log = opts.log ?? quiet;
  prepareStateDir(cfg.stateDir);
  return withStackLock(cfg.stateDir, async () => {
    const started = { postgres: false, temporal: false, worker: false };
    const reused = { postgres: false, temporal: false, worker: false };

    // A port, binary or directory problem fails here, before anything is started.
    if (!cfg.databaseUrl) await preflightPostgres(cfg);
    if (!cfg.temporalAddress) await preflightTemporal(cfg);

    // Postgres and Temporal do not depend on each other: bring them up side by side.
    const [pgResult, temporalResult] = await Promise.allSettled([
      cfg.databaseUrl
        ? checkExternalDatabase(cfg.databaseUrl).then(() => ({ databaseUrl: cfg.databaseUrl as string, started: false, reused: false }))
        : ensurePostgres(cfg, log),
      cfg.temporalAddress
        ? checkExternalTemporal(cfg.temporalAddress, cfg.namespace).then(() => ({
            address: cfg.temporalAddress as string,
            uiUrl: undefined,
            started: false,
            reused: false,
          }))
        : ensureTemporal(cfg, log),
    ]);
    if (pgResult.status === 'rejected' || temporalResult.status === 'rejected') {
      const errors = [pgResult, temporalResult].flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
      if (errors.length === 1) throw errors[0];
      throw new StackError(errors.map((e) => e.message).join('\n\n'), { cause: new AggregateError(errors) });
    }
    const db = pgResult.value;
    const temporal = temporalResult.value;
    started.postgres = db.started;
    reused.postgres = db.reused;
    started.temporal = temporal.started;
    reused.temporal = temporal.reused;

    if (opts.worker ?? true) {
      const w = await ensureWorker(cfg, { databaseUrl: db.databaseUrl, temporalAddress: temporal.address }, opts, log);
      started.worker = w.started;
      reused.worker = w.reused;
    }
    return {
      databaseUrl: db.databaseUrl,
      temporalAddress: temporal.address,
      ...(temporal.uiUrl && { temporalUiUrl: temporal.uiUrl }),
      started,
      reused,
    };
  });
}

/** What `judgeflow run` calls: the stack with a worker, started only where nothing runs yet; left up. */
export async function ensureStack(cfg: RuntimeConfig, opts: UpOptions = {}): Promise<StackInfo> {
  return up(cfg, { worker: true, ...opts });
}

/**
 * Stops what `up` started for this state dir: the worker first, then Temporal and Postgres together.
 * Services given by DATABASE_URL / TEMPORAL_ADDRESS are never touched. Data stays on disk.
 */
export async function down(cfg: RuntimeConfig, opts: { log?: (line: string) => void } = {}): Promise<{ stopped: string[] }> {
  const log = opts.log ?? quiet;
  if (!existsSync(cfg.stateDir)) return { stopped: [] };
  return withStackLock(cfg.stateDir, async () => {
    const stopped: string[] = [];
    if (await stopWorker(cfg.stateDir, log)) stopped.push('worker');
    const [temporal, postgres] = await Promise.all([stopTemporal(cfg.stateDir, log), stopPostgres(cfg.stateDir, log)]);
    if (temporal) stopped.push('temporal');
    if (postgres) stopped.push('postgres');
    return { stopped };
  });
}

async function checkExternalDatabase(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('select 1');
  } catch (err) {
    throw new StackError(
      `DATABASE_URL=${redactUrl(url)} does not answer: ${(err as Error).message}; start that server, fix the URL, or unset DATABASE_URL to run the embedded PostgreSQL`,
      {
        cause: err,
      },
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function checkExternalTemporal(address: string, namespace: string): Promise<void> {
  const err = await probeTemporal(address, namespace, 10_000);
  if (err) {
    throw new StackError(
      `TEMPORAL_ADDRESS=${address} (namespace ${namespace}) does not answer: ${err.message}; start that server, fix the address, or unset TEMPORAL_ADDRESS to run the Temporal dev server`,
      { cause: err },
    );
  }
}

function workerFingerprint(command: string[], env: Record<string, string>): string {
  return createHash('sha256')
    .update(JSON.stringify({ command, env, code: codeFingerprint() }))
    .digest('hex')
    .slice(0, 16);
}

/**
 * Size and mtime of every source file the worker runs: after a `git pull` or an edit, the next
 * `judgeflow run` restarts the worker instead of running new specs on old code.
 */
function codeFingerprint(): string {
  const hash = createHash('sha256');
  const walk = (dir: string) => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names) {
      const p = join(dir, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (/\.(ts|sql|json)$/.test(name)) hash.update(`${p}:${st.size}:${st.mtimeMs}\n`);
    }
  };
  for (const d of ['workflows', 'activities', 'db', 'spec']) walk(join(REPO_ROOT, d));
  const worker = join(REPO_ROOT, 'worker.ts');
  if (existsSync(worker)) hash.update(`${statSync(worker).mtimeMs}`);
  // A new build (dist/) restarts a worker that ran the sources through tsx, or an older build.
  const build = join(REPO_ROOT, 'dist', 'build.json');
  if (existsSync(build)) hash.update(`build:${statSync(build).mtimeMs}`);
  return hash.digest('hex');
}

async function ensureWorker(
  cfg: RuntimeConfig,
  services: { databaseUrl: string; temporalAddress: string },
  opts: UpOptions,
  log: (line: string) => void,
): Promise<{ started: boolean; reused: boolean }> {
  const command = opts.workerCommand ?? defaultWorkerCommand();
  const workerEnv: Record<string, string> = {
    DATABASE_URL: services.databaseUrl,
    TEMPORAL_ADDRESS: services.temporalAddress,
    TEMPORAL_NAMESPACE: cfg.namespace,
    JUDGEFLOW_TASK_QUEUE: cfg.taskQueue,
    JUDGEFLOW_STATE_DIR: cfg.stateDir,
    // The worker's launcher listens where this command's `judgeflow run` looks (runtime/launcher.ts).
    JUDGEFLOW_LAUNCHER_SOCKET: launcherSocketPath(cfg),
  };
  const fingerprint = workerFingerprint(command, workerEnv);
  await stopOrphanedWorker(cfg.stateDir, log);
  const running = liveRecord(cfg.stateDir, 'worker');
  const envChange = checkWorkerEnv(opts.workerEnv ?? [], running);
  if (running) {
    if (running.meta?.fingerprint === fingerprint && !envChange) {
      log(`worker: reusing pid ${running.pid}`);
      // A supervisor started by an `up` that did not live to arm it: arm it now.
      if (running.meta?.supervised === 'true') armSupervisor(running.pid);
      return { started: false, reused: true };
    }
    log(envChange ? `worker: restarting pid ${running.pid}: ${envChange}` : `worker: configuration changed since pid ${running.pid} started; restarting it`);
    await stopWorker(cfg.stateDir, log);
  }
  if (!opts.workerCommand && !existsSync(command[command.length - 1] as string)) {
    throw new StackError(`no worker entry point at ${command[command.length - 1]}; the checkout is incomplete`);
  }

  const logPath = join(logDir(cfg.stateDir), 'worker.log');
  const spawnedAt = Date.now();
  // The worker runs under the supervisor (restarted when it dies), with this process's
  // environment: API keys exported in the shell that ran `judgeflow run` reach it this way only.
  const spawned = spawnDetached({ command: supervisedCommand(command), logPath, env: { ...process.env, ...workerEnv }, cwd: REPO_ROOT });
  const record: ServiceRecord = {
    service: 'worker',
    pid: spawned.pid,
    ...(spawned.startTicks !== undefined && { startTicks: spawned.startTicks }),
    command,
    logPath,
    startedAt: new Date(spawnedAt).toISOString(),
    meta: { fingerprint, taskQueue: cfg.taskQueue, supervised: 'true' },
  };
  writeRecord(cfg.stateDir, record);
  let exited: string | undefined;
  const exit = new Promise<string>((resolveExit) =>
    spawned.child.once('exit', (code, sig) => {
      exited = sig ? `killed by ${sig}` : `exit code ${code}`;
      resolveExit(exited);
    }),
  );

  const timeoutMs = opts.workerReadyTimeoutMs ?? 60_000;
  let problem = await waitForPoller(services.temporalAddress, cfg.namespace, cfg.taskQueue, spawned.pid, spawnedAt, timeoutMs, () =>
    exited ? `the worker exited (${exited})` : recordAlive(record) ? undefined : 'the worker exited',
  );
  if (problem) {
    // /proc may show the process gone a moment before Node reports its exit status.
    if (problem === 'the worker exited') {
      const status = await Promise.race([exit, new Promise<undefined>((r) => setTimeout(r, 1_000, undefined))]);
      if (status) problem = `the worker exited (${status})`;
    }
    await stopRecorded(record, { sig: 'SIGTERM', group: true, graceMs: 5_000 }).catch(() => undefined);
    removeRecord(cfg.stateDir, 'worker');
    const secrets = [new URL(services.databaseUrl).password, decodeURIComponent(new URL(services.databaseUrl).password)];
    const tail = await logTail(logPath, spawned.logOffset, 25, secrets);
    throw new StackError(`the worker did not start polling task queue "${cfg.taskQueue}": ${problem}\n--- ${logPath} ---\n${tail}`);
  }
  armSupervisor(spawned.pid);
  log(`worker: started pid ${spawned.pid} on task queue "${cfg.taskQueue}" in ${Date.now() - spawnedAt} ms (supervised: restarted if it dies)`);
  return { started: true, reused: false };
}

/** Pids of the live children of `pid` (Linux /proc; empty elsewhere): the worker under its supervisor. */
export function childPids(pid: number): number[] {
  let names: string[];
  try {
    names = readdirSync(`/proc/${pid}/task`);
  } catch {
    // gone, or no /proc on this platform
    return [];
  }
  const out: number[] = [];
  for (const tid of names) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/)) if (c) out.push(Number(c));
    } catch {
      // the thread ended while we read
      continue;
    }
  }
  return out;
}

/**
 * A supervisor killed with -9 leaves its worker running, unsupervised, in the supervisor's process
 * group. Before a new one starts, stop that worker: processes in the recorded group running the
 * recorded worker command (so a recycled pid is never mistaken for ours).
 */
async function stopOrphanedWorker(stateDir: string, log: (line: string) => void): Promise<void> {
  const record = readRecord(stateDir, 'worker');
  if (!record || record.meta?.supervised !== 'true' || recordAlive(record)) return;
  const entry = record.command[record.command.length - 1] ?? '';
  let names: string[];
  try {
    names = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    // no /proc on this platform
    return;
  }
  for (const name of names) {
    let stat: string;
    let cmdline: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8');
    } catch {
      // exited while we looked
      continue;
    }
    const pgrp = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
    if (pgrp !== record.pid || !cmdline.split('\0').includes(entry)) continue;
    const orphan: ServiceRecord = { ...record, pid: Number(name), startTicks: processStartTicks(Number(name)) ?? undefined };
    const how = await stopRecorded(orphan, { sig: 'SIGTERM', group: false, graceMs: 15_000 });
    log(`worker: ${how} pid ${name}, left running without its supervisor (pid ${record.pid})`);
  }
}

/** Tells the supervisor the worker is up: from now on it restarts a worker that dies. */
function armSupervisor(pid: number): void {
  try {
    process.kill(pid, 'SIGUSR2');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * The environment of a running process (Linux: /proc/<pid>/environ, readable by its owner and
 * root); undefined when it cannot be read. Read to compare, never stored.
 */
function processEnv(pid: number): Map<string, string> | undefined {
  let raw: string;
  try {
    raw = readFileSync(`/proc/${pid}/environ`, 'utf8');
  } catch {
    // not Linux, or not ours to read: the caller cannot tell, and assumes the worker is fine
    return undefined;
  }
  const env = new Map<string, string>();
  for (const entry of raw.split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return env;
}

/**
 * Compares the variables the worker needs with this process and the running worker: returns why
 * the worker must be restarted (this process has a value the worker lacks), or undefined. Throws
 * WorkerEnvError with the exact fix when neither has one.
 */
function checkWorkerEnv(needed: { name: string; usedBy: string }[], running: ServiceRecord | undefined): string | undefined {
  if (needed.length === 0) return undefined;
  const workerEnv = running ? processEnv(running.pid) : undefined;
  const reasons: string[] = [];
  const missing: { name: string; usedBy: string }[] = [];
  for (const { name, usedBy } of needed) {
    const mine = process.env[name];
    const theirs = running ? (workerEnv ? workerEnv.get(name) : mine) : undefined;
    if (mine) {
      if (running && theirs !== mine)
        reasons.push(
          `${name} (${usedBy}) is ${theirs ? 'different' : 'set'} in this shell${theirs ? ' from' : ' but not in'} the running worker's environment`,
        );
    } else if (!theirs) {
      missing.push({ name, usedBy });
    }
  }
  if (missing.length > 0) {
    const names = missing.map((m) => m.name);
    throw new WorkerEnvError(
      `${missing.map((m) => `${m.usedBy} reads its API key from ${m.name} (api_key_env), which is set neither in this shell nor in the worker's environment`).join('; ')}. ` +
        `Fix: ${names.map((n) => `export ${n}=<key>`).join('; ')}; then run the same command again (the worker is restarted with it; the key is never written to disk)`,
    );
  }
  return reasons.length > 0 ? `${reasons.join('; ')} (keys pass through process environments only)` : undefined;
}

/**
 * Waits until the worker polls the task queue: a poller whose identity is the SDK default
 * `<pid>@<host>`, or any poller first seen after the spawn (a worker with a custom identity).
 */
async function waitForPoller(
  address: string,
  namespace: string,
  taskQueue: string,
  pid: number,
  spawnedAt: number,
  timeoutMs: number,
  failure: () => string | undefined,
): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  const connection = await Connection.connect({ address, connectTimeout: 10_000 });
  try {
    while (Date.now() < deadline) {
      const failed = failure();
      if (failed) return failed;
      // The worker runs under its supervisor: its identity carries the child's pid.
      const identities = new Set([pid, ...childPids(pid)].map((p) => `${p}@${hostname()}`));
      for (const taskQueueType of [1, 2]) {
        // 1 = workflow, 2 = activity task queue (TaskQueueType enum)
        const res = await connection.workflowService.describeTaskQueue({ namespace, taskQueue: { name: taskQueue }, taskQueueType });
        for (const poller of res.pollers ?? []) {
          if (identities.has(poller.identity ?? '')) return undefined;
          const seconds = Number(poller.lastAccessTime?.seconds ?? 0);
          if (seconds * 1000 >= spawnedAt + 1_000) return undefined;
        }
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    return failure() ?? `no poller from pid ${pid} after ${timeoutMs} ms (is it connecting to the right server and task queue?)`;
  } finally {
    await connection.close();
  }
}

async function stopWorker(stateDir: string, log: (line: string) => void): Promise<boolean> {
  const record = liveRecord(stateDir, 'worker');
  if (!record) return false;
  // SIGTERM lets the Temporal worker finish in-flight activities; then SIGKILL (to the group).
  // A supervisor gets it alone and passes it on once: a second SIGTERM would cut the worker's
  // graceful shutdown short.
  const how = await stopRecorded(record, { sig: 'SIGTERM', group: record.meta?.supervised !== 'true', graceMs: 15_000 });
  removeRecord(stateDir, 'worker');
  log(`worker: ${how} (pid ${record.pid})`);
  return how !== 'not running';
}
