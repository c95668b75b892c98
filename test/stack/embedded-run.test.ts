/**
 * `judgeflow run` against the embedded stack (a Temporal dev server and a supervised worker
 * process under a temporary state dir; the test database as DATABASE_URL), the way a user's bad
 * day goes: an API key exported after `up`, the worker killed with -9 mid-run, the Temporal
 * server killed with -9 under a following CLI. The run itself survives each; so must the CLI.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../../db/client.js';
import { processStartTicks, readRecord } from '../../runtime/daemon.js';
import { freePort } from '../../runtime/net.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { openTestDb, REPO, testDatabaseUrl, uniqueName } from '../helpers/env.js';
import { writeSpec } from '../helpers/spec.js';

const DATA = `${REPO}/data/vl-rewardbench/data.jsonl`;
const KEY_VAR = 'JF_TEST_SIM_KEY';
const SECRET = `sk-test-${Math.random().toString(36).slice(2)}-never-on-disk`;

let root: string;
let stateDir: string;
let env: Record<string, string>;
let db: DbHandle;
let sim: SimHandle;
let openSim: SimHandle;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'jf-embedded-run-'));
  chmodSync(root, 0o755);
  stateDir = join(root, 'state');
  env = {
    JUDGEFLOW_STATE_DIR: stateDir,
    JUDGEFLOW_TEMPORAL_PORT: String(await freePort()),
    JUDGEFLOW_TEMPORAL_UI_PORT: '0',
    JUDGEFLOW_TASK_QUEUE: uniqueName('embedded'),
    DATABASE_URL: testDatabaseUrl(),
    TEMPORAL_ADDRESS: '', // the embedded dev server, so the CLI manages the worker
    [KEY_VAR]: '',
  };
  db = await openTestDb();
  // Every request needs the key; each takes 150 ms, so a 40-item run lasts several seconds.
  sim = await startSimulator({
    seed: 3,
    api_key: SECRET,
    truth: DATA,
    latency: { kind: 'fixed', ms: 150 },
    models: { judge: { behaviour: 'judge', accuracy: 0.8 } },
  });
  // The same without a key, so the kill tests do not depend on the key's way to the worker.
  openSim = await startSimulator({ seed: 3, truth: DATA, latency: { kind: 'fixed', ms: 150 }, models: { judge: { behaviour: 'judge', accuracy: 0.8 } } });
});

afterAll(async () => {
  if (env) await runCli(['down'], env);
  await sim?.close();
  await openSim?.close();
  await db?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

function spec(name: string, limit = 40, keyed = true) {
  return writeSpec({
    name,
    endpoints: {
      judge: keyed ? { base_url: sim.url, model: 'judge', api_key_env: KEY_VAR, concurrency: 4 } : { base_url: openSim.url, model: 'judge', concurrency: 4 },
    },
    datasets: { vlrb: { path: DATA, limit } },
    stages: [{ id: 'eval', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge', bootstrap: 50 } }],
  });
}

const withKey = () => ({ ...env, [KEY_VAR]: SECRET });

/** The bin in a child process, output collected as it comes. */
function startCli(args: string[], childEnv: Record<string, string>) {
  const child = spawn(process.execPath, [join(REPO, 'bin', 'judgeflow.mjs'), ...args], {
    cwd: REPO,
    env: { ...process.env, ...childEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (out.stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out.stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => child.once('close', (code) => resolve({ code, ...out })));
  return { child, out, done };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function runOf(name: string): Promise<{ id: string; status: string } | undefined> {
  const r = await db.pool.query<{ id: string; status: string }>(
    'select r.id, r.status from runs r join experiments e on e.id = r.experiment_id where e.name = $1',
    [name],
  );
  return r.rows[0];
}

/**
 * Answers recorded so far for a run (progress that only a working worker makes). Per request, as
 * they come: `stages.items_done` is written only when the stage ends, too late for a kill mid-run.
 */
async function itemsDone(runId: string): Promise<number> {
  const r = await db.pool.query<{ n: number }>(
    'select count(*)::int as n from inference_requests q join inference_results r on r.request_id = q.id where q.run_id = $1',
    [runId],
  );
  return r.rows[0]?.n ?? 0;
}

/** The worker process under its supervisor `pid` (its children that run worker.ts / worker.js). */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid !== pid || processStartTicks(Number(name)) === null) continue;
    if (/[\\/]worker\.(ts|js|mjs)\0/.test(readFileSync(`/proc/${name}/cmdline`, 'utf8'))) found.push(Number(name));
  }
  return found;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((p) => join(dir, p))
    .filter((p) => statSync(p).isFile());
}

describe('judgeflow run on the embedded stack', () => {
  let workerPid: number;

  it('`up` from a shell without the key starts a supervised worker', async () => {
    const res = await runCli(['up'], env);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/worker: {3}started/);
    workerPid = readRecord(stateDir, 'worker')!.pid;
    expect(childrenOf(workerPid)).toHaveLength(1);
  });

  it('a key set neither in the shell nor in the worker: exit 2 with the exact fix, nothing launched', async () => {
    const name = uniqueName('nokey');
    const res = await runCli(['run', spec(name)], env);
    expect(res.code, res.stderr).toBe(2);
    expect(res.stderr).toContain(
      `endpoint "judge" reads its API key from ${KEY_VAR} (api_key_env), which is set neither in this shell nor in the worker's environment`,
    );
    expect(res.stderr).toContain(`Fix: export ${KEY_VAR}=<key>; then run the same command again`);
    expect(await runOf(name)).toBeUndefined();
    expect(readRecord(stateDir, 'worker')!.pid).toBe(workerPid);
  });

  it('`export KEY=…; judgeflow run` with the stack already up: the worker is restarted with it, the run succeeds, the key is written nowhere', async () => {
    const name = uniqueName('key');
    const res = await runCli(['run', spec(name, 20)], withKey());
    expect(res.stderr).toContain(
      `worker: restarting pid ${workerPid}: ${KEY_VAR} (endpoint "judge") is set in this shell but not in the running worker's environment`,
    );
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/eval\s+20\/20\s+\d+\.\d \[/);
    expect(readRecord(stateDir, 'worker')!.pid).not.toBe(workerPid);
    workerPid = readRecord(stateDir, 'worker')!.pid;

    // A second run from a shell without the key uses the worker that has it.
    const again = await runCli(['run', spec(uniqueName('key-again'), 10)], env);
    expect(again.code).toBe(0);
    expect(readRecord(stateDir, 'worker')!.pid).toBe(workerPid);

    for (const file of filesUnder(stateDir)) expect(readFileSync(file).includes(SECRET), file).toBe(false);
    const run = (await runOf(name))!;
    for (const sql of [
      'select count(*)::int as n from runs r where r.id = $1 and r::text like $2',
      'select count(*)::int as n from stages s where s.run_id = $1 and s::text like $2',
      'select count(*)::int as n from experiments e join runs r on r.experiment_id = e.id where r.id = $1 and e::text like $2',
    ]) {
      expect((await db.pool.query<{ n: number }>(sql, [run.id, `%${SECRET}%`])).rows[0]!.n).toBe(0);
    }
  });

  it('kill -9 of the worker mid-run: the supervisor starts it again and the run completes', async () => {
    const name = uniqueName('kill9');
    const launched = await runCli(['run', spec(name, 40, false), '--detach', '--json'], env);
    expect(launched.code).toBe(0);
    const runId = JSON.parse(launched.stdout).runId as string;
    await waitFor('progress before the kill', async () => (await itemsDone(runId)) > 0);
    const [worker] = childrenOf(workerPid);
    process.kill(worker!, 'SIGKILL');
    // Mid-run: answers still missing, so the run can only end with the worker started again.
    expect(await itemsDone(runId)).toBeLessThan(40);

    const followed = await runCli(['status', runId, '--watch'], env);
    expect(followed.code).toBe(0);
    expect(followed.stdout).toMatch(new RegExp(`run ${runId}: succeeded`));
    expect(followed.stdout).toMatch(/eval\s+40\/40\s+\d+\.\d \[/);
    const log = readFileSync(join(stateDir, 'logs', 'worker.log'), 'utf8');
    expect(log).toContain(`worker pid ${worker} exited (killed by SIGKILL)`);
    expect(readRecord(stateDir, 'worker')!.pid).toBe(workerPid);
    expect(childrenOf(workerPid)).toEqual([expect.any(Number)]);
    expect(childrenOf(workerPid)).not.toContain(worker);
  });

  it('kill -9 of the supervisor: the next `up` stops the worker it left behind and starts a supervised one', async () => {
    const [worker] = childrenOf(workerPid);
    process.kill(workerPid, 'SIGKILL');
    await waitFor('the supervisor to be gone', () => processStartTicks(workerPid) === null || undefined);
    expect(processStartTicks(worker!)).toEqual(expect.any(Number));
    const res = await runCli(['up'], env);
    expect(res.code).toBe(0);
    expect(res.stderr).toContain(`worker: stopped pid ${worker}, left running without its supervisor (pid ${workerPid})`);
    expect(processStartTicks(worker!)).toBeNull();
    const next = readRecord(stateDir, 'worker')!.pid;
    expect(next).not.toBe(workerPid);
    expect(childrenOf(next)).toHaveLength(1);
    workerPid = next;
  });

  it('kill -9 of Temporal under a following `run`, then `judgeflow up`: the CLI reconnects and ends with the results (exit 0)', async () => {
    const name = uniqueName('temporal-kill');
    const cli: { child: ChildProcess; out: { stdout: string; stderr: string }; done: Promise<CliResult> } = startCli(['run', spec(name, 40, false)], env);
    const run = await waitFor('the run to start', () => runOf(name));
    await waitFor('progress before the kill', async () => (await itemsDone(run.id)) > 0);
    process.kill(readRecord(stateDir, 'temporal')!.pid, 'SIGKILL');
    await waitFor('the CLI to notice', () => /lost contact with Temporal/.test(cli.out.stderr) || undefined, 60_000).catch((err: Error) => {
      throw new Error(`${err.message}; the CLI said:\n${cli.out.stderr}`);
    });
    const up = await runCli(['up'], env);
    expect(up.code).toBe(0);
    const res = await cli.done;
    expect(res.stderr).toMatch(/lost contact with Temporal at 127\.0\.0\.1:\d+ .*the run goes on without this terminal/);
    expect(res.stderr).toMatch(/reconnected to Temporal at 127\.0\.0\.1:\d+ after \d+ s/);
    expect(res.stderr).not.toMatch(/ServiceError/);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/eval\s+40\/40\s+\d+\.\d \[/);
  });

  it('Temporal away for longer than JUDGEFLOW_RECONNECT_TIMEOUT_S: exit 3 with the re-attach command; the run completes once it is back', async () => {
    const name = uniqueName('temporal-gone');
    const cli = startCli(['run', spec(name, 120, false)], { ...env, JUDGEFLOW_RECONNECT_TIMEOUT_S: '3' });
    const run = await waitFor('the run to start', () => runOf(name));
    await waitFor('progress before the kill', async () => (await itemsDone(run.id)) > 0);
    process.kill(readRecord(stateDir, 'temporal')!.pid, 'SIGKILL');
    const res = await cli.done;
    expect(res.code, res.stderr).toBe(3);
    expect(res.stderr).toContain(`run ${run.id} was not stopped and goes on when Temporal is back. Follow it again: judgeflow status ${run.id} --watch`);
    expect(res.stderr).not.toMatch(/ServiceError/);

    expect((await runCli(['up'], env)).code).toBe(0);
    const followed = await runCli(['status', run.id, '--watch'], env);
    expect(followed.code).toBe(0);
    expect(followed.stdout).toMatch(/eval\s+120\/120\s+\d+\.\d \[/);
  });
});
