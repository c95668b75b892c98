/**
 * Detached service processes of the local stack: spawning them so they outlive the CLI, the pid
 * records under `<stateDir>/run/` that let a later `down` find them, and stopping them.
 *
 * A record holds the pid and (on Linux) the process start time, so a recycled pid is not
 * mistaken for our service; a record whose process is gone is stale and ignored.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export type ServiceName = 'postgres' | 'temporal' | 'worker';

/** Something in the local stack could not be started, reused or stopped. */
export class StackError extends Error {
  override readonly name: string = 'StackError';
}

/** A port the stack needs is held by a process that is not ours. */
export class PortInUseError extends StackError {
  override readonly name = 'PortInUseError';
  constructor(
    readonly port: number,
    readonly envVar: string,
    what: string,
  ) {
    super(`port ${port} (${what}) is already in use by another process; set ${envVar} to a free port, or stop what listens on ${port}`);
  }
}

export interface ServiceRecord {
  service: ServiceName;
  pid: number;
  /** /proc/<pid>/stat start time (clock ticks since boot); absent off Linux. */
  startTicks?: number;
  port?: number;
  uiPort?: number;
  command: string[];
  logPath: string;
  startedAt: string;
  /** Service-specific facts, e.g. a fingerprint of the worker's configuration. */
  meta?: Record<string, string>;
}

export function runDir(stateDir: string): string {
  return join(stateDir, 'run');
}

export function logDir(stateDir: string): string {
  return join(stateDir, 'logs');
}

function recordPath(stateDir: string, service: ServiceName): string {
  return join(runDir(stateDir), `${service}.json`);
}

export function readRecord(stateDir: string, service: ServiceName): ServiceRecord | undefined {
  const path = recordPath(stateDir, service);
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as ServiceRecord;
  } catch (err) {
    throw new StackError(`pid record ${path} is unreadable (${(err as Error).message}); delete it and stop the ${service} process by hand if it still runs`, {
      cause: err,
    });
  }
}

export function writeRecord(stateDir: string, record: ServiceRecord): void {
  const path = recordPath(stateDir, record.service);
  mkdirSync(dirname(path), { recursive: true });
  // Write then rename so a killed CLI never leaves half a record.
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(record, null, 2));
  renameSync(tmp, path);
}

export function removeRecord(stateDir: string, service: ServiceName): void {
  rmSync(recordPath(stateDir, service), { force: true });
}

/** Start time of a live, non-zombie process (Linux); `null` when it is gone; `undefined` when unknowable. */
export function processStartTicks(pid: number): number | null | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    // no such process, or no /proc on this platform
    return existsSync('/proc/self/stat') ? null : undefined;
  }
  // Fields after the parenthesised command name: state is field 3, starttime field 22.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (rest[0] === 'Z' || rest[0] === 'X') return null;
  return Number(rest[19]);
}

export function pidAlive(pid: number): boolean {
  const ticks = processStartTicks(pid);
  if (ticks === null) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The record's process still runs and is the one we started (not a recycled pid). */
export function recordAlive(record: ServiceRecord): boolean {
  if (!pidAlive(record.pid)) return false;
  if (record.startTicks === undefined) return true;
  return processStartTicks(record.pid) === record.startTicks;
}

/** The record for `service` if its process is alive; a stale record is deleted. */
export function liveRecord(stateDir: string, service: ServiceName): ServiceRecord | undefined {
  const record = readRecord(stateDir, service);
  if (!record) return undefined;
  if (recordAlive(record)) return record;
  removeRecord(stateDir, service);
  return undefined;
}

export interface SpawnedService {
  child: ChildProcess;
  pid: number;
  startTicks?: number;
  /** Size of the log before this start: the tail from here is this start's output. */
  logOffset: number;
}

/**
 * Starts `command` in its own process group, stdout and stderr appended to `logPath`, not tied
 * to this process: the CLI may exit and the service keeps running.
 */
export function spawnDetached(opts: { command: string[]; logPath: string; env: NodeJS.ProcessEnv; cwd?: string; uid?: number; gid?: number }): SpawnedService {
  const [file, ...args] = opts.command;
  if (!file) throw new StackError('empty command');
  mkdirSync(dirname(opts.logPath), { recursive: true });
  const logOffset = existsSync(opts.logPath) ? statSync(opts.logPath).size : 0;
  const fd = openSync(opts.logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(file, args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: opts.env,
      ...(opts.cwd !== undefined && { cwd: opts.cwd }),
      ...(opts.uid !== undefined && { uid: opts.uid }),
      ...(opts.gid !== undefined && { gid: opts.gid }),
    });
  } finally {
    closeSync(fd);
  }
  // A spawn failure (ENOENT, EACCES) arrives as an event; keep it from crashing the process.
  child.on('error', () => undefined);
  child.unref();
  if (child.pid === undefined) throw new StackError(`could not start ${file}: no pid (does it exist and is it executable?)`);
  const ticks = processStartTicks(child.pid);
  return { child, pid: child.pid, logOffset, ...(typeof ticks === 'number' && { startTicks: ticks }) };
}

/**
 * Starts a service detached (see spawnDetached), writes its record, and waits for `ready` (given
 * a "still running" check). When it is not ready, stops it with `stop`, removes the record and
 * throws what `failure` makes of the error and the tail of this start's log.
 */
export async function startRecordedService(opts: {
  stateDir: string;
  service: ServiceName;
  command: string[];
  logPath: string;
  env: NodeJS.ProcessEnv;
  cwd?: string;
  uid?: number;
  gid?: number;
  port: number;
  uiPort?: number;
  ready: (stillRunning: () => boolean) => Promise<Error | undefined>;
  stop: { sig: NodeJS.Signals; group: boolean };
  failure: (err: Error, logTail: string) => StackError;
}): Promise<SpawnedService> {
  const spawned = spawnDetached(opts);
  const fresh: ServiceRecord = {
    service: opts.service,
    pid: spawned.pid,
    ...(spawned.startTicks !== undefined && { startTicks: spawned.startTicks }),
    port: opts.port,
    ...(opts.uiPort !== undefined && { uiPort: opts.uiPort }),
    command: opts.command,
    logPath: opts.logPath,
    startedAt: new Date().toISOString(),
  };
  writeRecord(opts.stateDir, fresh);
  let exited = false;
  spawned.child.once('exit', () => {
    exited = true;
  });
  const err = await opts.ready(() => !exited && recordAlive(fresh));
  if (err) {
    await stopRecorded(fresh, { ...opts.stop, graceMs: 5_000 }).catch(() => undefined);
    removeRecord(opts.stateDir, opts.service);
    throw opts.failure(err, await logTail(fresh.logPath, spawned.logOffset));
  }
  return spawned;
}

/** The last `lines` lines written to `logPath` since `fromOffset`, secrets masked. */
export async function logTail(logPath: string, fromOffset = 0, lines = 25, secrets: string[] = []): Promise<string> {
  let text: string;
  try {
    const fh = await open(logPath, 'r');
    try {
      const size = (await fh.stat()).size;
      const start = Math.max(fromOffset, size - 64 * 1024);
      const buf = Buffer.alloc(Math.max(0, size - start));
      await fh.read(buf, 0, buf.length, start);
      text = buf.toString('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    return `(no log at ${logPath}: ${(err as Error).message})`;
  }
  for (const secret of secrets) if (secret) text = text.split(secret).join('***');
  const tail = text.trimEnd().split('\n').slice(-lines).join('\n');
  return tail === '' ? `(${logPath} is empty)` : tail;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitDead(record: ServiceRecord, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!recordAlive(record)) return true;
    await sleep(50);
  }
  return !recordAlive(record);
}

function signal(pid: number, sig: NodeJS.Signals, group: boolean): void {
  try {
    process.kill(group ? -pid : pid, sig);
  } catch (err) {
    // Already gone is what we want; a group may be gone while the leader lingers as a zombie.
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * Stops a recorded process: `sig` (to its whole process group when `group`), then SIGKILL to the
 * group after `graceMs`. Returns how it ended.
 */
export async function stopRecorded(
  record: ServiceRecord,
  opts: { sig: NodeJS.Signals; group: boolean; graceMs: number },
): Promise<'stopped' | 'killed' | 'not running'> {
  if (!recordAlive(record)) return 'not running';
  signal(record.pid, opts.sig, opts.group);
  if (await waitDead(record, opts.graceMs)) return 'stopped';
  signal(record.pid, 'SIGKILL', true);
  if (await waitDead(record, 5_000)) return 'killed';
  throw new StackError(`${record.service} (pid ${record.pid}) survived SIGKILL; stop it by hand`);
}

/**
 * Runs `fn` holding `<stateDir>/run/stack.lock`, so two CLIs bringing the stack up at once do not
 * both start a Postgres on one data directory. A lock left by a dead process is taken over.
 */
export async function withStackLock<T>(stateDir: string, fn: () => Promise<T>, timeoutMs = 120_000): Promise<T> {
  const path = join(runDir(stateDir), 'stack.lock');
  mkdirSync(dirname(path), { recursive: true });
  const deadline = Date.now() + timeoutMs;
  const me = JSON.stringify({ pid: process.pid, startTicks: processStartTicks(process.pid) });
  for (;;) {
    try {
      writeFileSync(path, me, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder: { pid: number; startTicks?: number | null } | undefined;
    try {
      holder = JSON.parse(await readFile(path, 'utf8')) as { pid: number; startTicks?: number | null };
    } catch {
      // being written right now, or removed: look again
      holder = undefined;
    }
    if (holder) {
      const alive =
        holder.pid !== process.pid && pidAlive(holder.pid) && (typeof holder.startTicks !== 'number' || processStartTicks(holder.pid) === holder.startTicks);
      if (!alive && holder.pid !== process.pid) {
        rmSync(path, { force: true });
        continue;
      }
      if (holder.pid === process.pid) {
        throw new StackError(`stack lock ${path} is already held by this process (nested up/down call)`);
      }
    }
    if (Date.now() > deadline) {
      throw new StackError(`another judgeflow process (pid ${holder?.pid ?? '?'}) holds ${path}; wait for it, or delete the file if that process is gone`);
    }
    await sleep(200);
  }
  try {
    return await fn();
  } finally {
    rmSync(path, { force: true });
  }
}
