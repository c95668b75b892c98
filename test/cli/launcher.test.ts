/**
 * The resident launcher (runtime/launcher.ts): a compiled worker process takes `judgeflow run`
 * commands over its socket. What a user relies on: the same output and exit codes as a run in the
 * CLI's own process, spec errors reported the same way with nothing written, keys never sent,
 * commands it must not take handed back before anything happens, Ctrl-C and a worker that dies
 * while following handled like the CLI does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { staleReason } from '../../bin/dist.mjs';
import { ACK_TIMEOUT_MS, launcherDirIsPrivate, launcherIdentity, launcherSocketPath } from '../../runtime/launcher-client.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import type { DbHandle } from '../../db/client.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { REPO, experimentRowCounts, openTestDb, testDatabaseUrl, testTemporalAddress, uniqueName } from '../helpers/env.js';
import { writeSpec } from '../helpers/spec.js';

const DATA = join(REPO, 'data/vl-rewardbench/data.jsonl');

interface Proc {
  child: ChildProcess;
  out: string;
}

function startWorkerProcess(env: NodeJS.ProcessEnv, ready: RegExp): Promise<Proc> {
  const child = spawn(process.execPath, [join(REPO, 'bin', 'worker.mjs')], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const proc: Proc = { child, out: '' };
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      proc.out += d.toString();
      if (ready.test(proc.out)) resolve(proc);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`worker exited (${code}):\n${proc.out}`)));
  });
}

async function stop(proc: Proc | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.removeAllListeners('exit');
  const exited = new Promise((r) => proc.child.once('exit', r));
  proc.child.kill(signal);
  await exited;
}

function startCli(args: string[], env: Record<string, string>): { child: ChildProcess; out: { stdout: string; stderr: string }; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [join(REPO, 'bin', 'judgeflow.mjs'), ...args], {
    cwd: REPO,
    env: { ...process.env, DATABASE_URL: testDatabaseUrl(), TEMPORAL_ADDRESS: testTemporalAddress(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  child.stdout!.on('data', (d: Buffer) => (out.stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out.stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => child.once('close', (code) => resolve({ code, ...out })));
  return { child, out, done };
}

async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, ms = 60_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The launcher's own record of each command it ran (the worker's log). */
const served = (proc: Proc, spec: string) => proc.out.split('\n').filter((l) => l.includes('launcher: ["run"') && l.includes(spec));

describe('the resident launcher of a compiled worker', () => {
  let sim: SimHandle;
  let slowSim: SimHandle;
  let db: DbHandle;
  let worker: Proc;
  let spare: Proc | undefined;
  let stateDir: string;
  const taskQueue = uniqueName('launcher');
  let env: Record<string, string>;

  beforeAll(async () => {
    // Without a fresh build there is no launcher (both sides require dist/): that is a setup error here, not a pass.
    expect(staleReason(), 'dist/ must match the sources: run `npm run build`').toBeUndefined();
    sim = await startSimulator({ seed: 4, truth: DATA, models: { judge: { behaviour: 'judge', accuracy: 0.8 } } });
    slowSim = await startSimulator({ seed: 4, truth: DATA, latency: { kind: 'fixed', ms: 100 }, models: { judge: { behaviour: 'judge', accuracy: 0.8 } } });
    db = await openTestDb();
    stateDir = mkdtempSync(join(tmpdir(), 'jf-launcher-'));
    env = { JUDGEFLOW_TASK_QUEUE: taskQueue, JUDGEFLOW_STATE_DIR: stateDir };
    const workerEnv: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: testDatabaseUrl(),
      TEMPORAL_ADDRESS: testTemporalAddress(),
      ...env,
      JF_LAUNCHER_TEST_KEY: 'key-of-the-worker',
    };
    delete workerEnv.JUDGEFLOW_WORKFLOW_BUNDLE;
    worker = await startWorkerProcess(workerEnv, /launcher: serving `judgeflow run` on \S+/);
  });
  afterAll(async () => {
    await stop(worker);
    await stop(spare);
    await sim?.close();
    await slowSim?.close();
    await db?.close();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const spec = (name: string, extra: Record<string, unknown> = {}, url = sim.url, limit = 30) =>
    writeSpec({
      name,
      seed: 3,
      endpoints: { judge: { base_url: url, model: 'judge', concurrency: 8, ...extra } },
      datasets: { vlrb: { path: DATA, limit } },
      stages: [{ id: 'eval', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge', bootstrap: 50 } }],
    });

  it('listens on the socket the CLI computes from the same environment, in a folder only its user can enter', () => {
    const path = launcherSocketPath(
      launcherIdentity({ ...process.env, DATABASE_URL: testDatabaseUrl(), TEMPORAL_ADDRESS: testTemporalAddress(), ...env }, REPO),
    );
    expect(worker.out).toContain(`launcher: serving \`judgeflow run\` on ${path}`);
    expect(existsSync(path)).toBe(true);
  });

  it('runs a job with the same output and exit code as the CLI in its own process', async () => {
    const name = uniqueName('via-launcher');
    const file = spec(name);
    const viaLauncher = await runCli(['run', file], env);
    expect(viaLauncher.code, viaLauncher.stderr).toBe(0);
    expect(served(worker, file)).toHaveLength(1);
    // Started with eager start on the worker's own connection: its first workflow task came back in the start's reply.
    expect(served(worker, file)[0]).toMatch(/exit 0 after \d+ ms \(started eagerly\)$/);
    // The same spec under another name, run in the CLI's own process: the same table row for row,
    // but for the run id and the cached count (its requests are all in the cache by now).
    const twin = spec(`${name}-local`);
    const local = await runCli(['run', twin], { ...env, JUDGEFLOW_LAUNCHER: 'off' });
    expect(local.code, local.stderr).toBe(0);
    expect(served(worker, twin)).toHaveLength(0);
    const table = (out: string) =>
      out
        .replace(/run \S+/g, 'run <id>')
        .replace(/\s+\d+ \(\d+ cached\)/, '')
        .replace(/ -+$/gm, ' -');
    expect(table(viaLauncher.stdout)).toBe(table(local.stdout));
    expect(viaLauncher.stdout).toMatch(/eval\s+30\/30\s+\d+\.\d \[/);
    expect(viaLauncher.stderr).toMatch(/^run \S+: started$/m);
    // Again through the launcher: the eager start finds the run and attaches to it, as the CLI does.
    const again = await runCli(['run', file], env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/already exists for this spec version: attaching to it/);
    expect(served(worker, file)).toHaveLength(2);
    expect(served(worker, file)[1]).not.toContain('started eagerly');
    expect(table(again.stdout)).toBe(table(viaLauncher.stdout));
  });

  it('two commands at once: each gets its own run, output and exit code', async () => {
    const [a, b] = [spec(uniqueName('together-a')), spec(uniqueName('together-b'), {}, sim.url, 20)];
    const [ra, rb] = await Promise.all([runCli(['run', a], env), runCli(['run', b], env)]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    expect(served(worker, a)).toHaveLength(1);
    expect(served(worker, b)).toHaveLength(1);
    expect(ra.stdout).toMatch(/eval\s+30\/30\s+\d+\.\d \[/);
    expect(rb.stdout).toMatch(/eval\s+20\/20\s+\d+\.\d \[/);
    expect(ra.stdout).not.toMatch(/eval\s+20\/20/);
    expect(/^run (\S+): started$/m.exec(ra.stderr)?.[1]).not.toBe(/^run (\S+): started$/m.exec(rb.stderr)?.[1]);
  });

  it('a spec error: exit 2 with the file and field named, as from the CLI, and nothing written', async () => {
    const name = uniqueName('bad-spec');
    const file = writeSpec({
      name,
      endpoints: { judge: { base_url: sim.url, model: 'judge' } },
      datasets: { vlrb: { path: DATA } },
      stages: [{ id: 'eval', uses: 'evaluate', with: { dataset: 'nope', judge: 'judge' } }],
    });
    const viaLauncher = await runCli(['run', file], env);
    const local = await runCli(['run', file], { ...env, JUDGEFLOW_LAUNCHER: 'off' });
    expect(viaLauncher.code).toBe(2);
    expect(served(worker, file)[0]).toMatch(/exit 2/);
    expect(viaLauncher.stderr).toBe(local.stderr);
    expect(viaLauncher.stderr).toContain(`${file.split('/').at(-1)}: stages[0].with: dataset "nope" is not defined under datasets:`);
    expect(await experimentRowCounts(db, name)).toEqual({ e: 0, r: 0, s: 0 });
  });

  it('an API key: taken when the client has the same value as the worker, handed back to the CLI when not; the value never leaves the client', async () => {
    const same = spec(uniqueName('key-same'), { api_key_env: 'JF_LAUNCHER_TEST_KEY' });
    const res = await runCli(['run', same, '--detach'], { ...env, JF_LAUNCHER_TEST_KEY: 'key-of-the-worker' });
    expect(res.code, res.stderr).toBe(0);
    expect(served(worker, same)).toHaveLength(1);

    const other = spec(uniqueName('key-other'), { api_key_env: 'JF_LAUNCHER_TEST_KEY' });
    const handed = await runCli(['run', other, '--detach'], { ...env, JF_LAUNCHER_TEST_KEY: 'another-key-value' });
    expect(handed.code, handed.stderr).toBe(0);
    expect(handed.stderr).toMatch(/^run \S+: started$/m);
    expect(served(worker, other)).toHaveLength(0);
    expect(worker.out).not.toContain('another-key-value');
  });

  it("trusts only a launchers' folder that is the user's own and closed to others", () => {
    const dir = mkdtempSync(join(tmpdir(), 'jf-launcher-dir-'));
    try {
      chmodSync(dir, 0o700);
      expect(launcherDirIsPrivate(dir)).toBe(true);
      chmodSync(dir, 0o755);
      expect(launcherDirIsPrivate(dir)).toBe(false);
      expect(launcherDirIsPrivate(join(dir, 'missing'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a launcher that accepts but never answers (a stuck worker): the CLI runs the command itself after ACK_TIMEOUT_MS', async () => {
    const stuckEnv = { ...env, JUDGEFLOW_TASK_QUEUE: uniqueName('stuck') };
    const path = launcherSocketPath(
      launcherIdentity({ ...process.env, DATABASE_URL: testDatabaseUrl(), TEMPORAL_ADDRESS: testTemporalAddress(), ...stuckEnv }, REPO),
    );
    const held: Socket[] = [];
    const stuck = createServer((s) => void held.push(s));
    await new Promise<void>((resolve) => stuck.listen(path, resolve));
    try {
      const started = Date.now();
      const res = await runCli(['run', spec(uniqueName('stuck')), '--detach'], stuckEnv);
      expect(res.code, res.stderr).toBe(0);
      expect(res.stderr).toMatch(/^run \S+: started$/m);
      expect(held).toHaveLength(1);
      expect(Date.now() - started).toBeGreaterThanOrEqual(ACK_TIMEOUT_MS);
    } finally {
      for (const s of held) s.destroy();
      await new Promise((r) => stuck.close(r));
    }
  });

  it('a protocol client of another build is handed back (fallback) before anything runs', async () => {
    const path = launcherSocketPath(
      launcherIdentity({ ...process.env, DATABASE_URL: testDatabaseUrl(), TEMPORAL_ADDRESS: testTemporalAddress(), ...env }, REPO),
    );
    const reply = await new Promise<string>((resolve, reject) => {
      const s = connect(path);
      let got = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => (got += d));
      s.once('close', () => resolve(got));
      s.once('error', reject);
      s.write(`${JSON.stringify({ v: 1, build: 'another-build', argv: ['run', 'x'], cwd: REPO, errTTY: false, env: {}, keys: {} })}\n`);
    });
    expect(JSON.parse(reply.trim())).toEqual({ fallback: 'another build of judgeflow' });
  });

  it('Ctrl-C while following: exit 130 with the re-attach command; the run goes on to succeed', async () => {
    const name = uniqueName('ctrl-c');
    const file = spec(name, {}, slowSim.url, 80);
    const cli = startCli(['run', file], env);
    const runId = await waitFor('the launch', () => /^run (\S+): started$/m.exec(cli.out.stderr)?.[1]);
    cli.child.kill('SIGINT');
    const res = await cli.done;
    expect(res.code, res.stderr).toBe(130);
    expect(res.stderr).toContain(`stopped following run ${runId} (Ctrl-C); the run goes on. Follow it again: judgeflow status ${runId} --watch`);
    const followed = await runCli(['status', runId, '--watch'], env);
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stdout).toMatch(/eval\s+80\/80\s+\d+\.\d \[/);
  });

  it('the worker killed while the CLI follows through it: the CLI follows from its own process and ends with the results, exit 0', async () => {
    // Another worker on the queue (no launcher) finishes the run.
    spare = await startWorkerProcess(
      { ...process.env, DATABASE_URL: testDatabaseUrl(), TEMPORAL_ADDRESS: testTemporalAddress(), ...env, JUDGEFLOW_LAUNCHER: 'off' },
      /judgeflow worker: task queue/,
    );
    const name = uniqueName('worker-killed');
    const file = spec(name, {}, slowSim.url, 80);
    const cli = startCli(['run', file], env);
    await waitFor('the launch', () => /^run (\S+): started$/m.exec(cli.out.stderr)?.[1]);
    await stop(worker, 'SIGKILL');
    const res = await cli.done;
    expect(res.stderr).toContain('judgeflow: the worker serving this command went away; following the run from here');
    expect(res.stderr).toMatch(/already exists for this spec version: attaching to it/);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/eval\s+80\/80\s+\d+\.\d \[/);
    // The socket it left: the next command finds nobody there and runs in its own process.
    const next = await runCli(['run', spec(uniqueName('after-kill')), '--detach'], env);
    expect(next.code, next.stderr).toBe(0);
  });
});
