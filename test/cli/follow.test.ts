/**
 * The CLI's honest exits (issue 8, item 3), through the real bin in a child process: hostile YAML,
 * a missing dataset said once, --strict / `strict: true` on skipped rows, the "N of M items"
 * results header, and Ctrl-C while following (the run goes on; the exact command to re-attach).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../../db/client.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import type { RunningWorker } from '../../worker.js';
import { runCli } from '../helpers/cli.js';
import { experimentRowCounts, openTestDb, REPO, startTestWorker, testClient, testDatabaseUrl, testTemporalAddress, uniqueName } from '../helpers/env.js';
import { writeSpec } from '../helpers/spec.js';

const DATA = `${REPO}/data/vl-rewardbench/data.jsonl`;
let db: DbHandle;
let sim: SimHandle;
let slowSim: SimHandle;

beforeAll(async () => {
  db = await openTestDb();
  sim = await startSimulator({ seed: 1, truth: DATA, models: { judge: { behaviour: 'judge', accuracy: 0.8 } } });
  slowSim = await startSimulator({ seed: 1, truth: DATA, latency: { kind: 'fixed', ms: 500 }, models: { judge: { behaviour: 'judge', accuracy: 0.8 } } });
});
afterAll(async () => {
  await sim?.close();
  await slowSim?.close();
  await db?.close();
});

function evalSpec(name: string, url: string, data = DATA, limit: number | undefined = 20) {
  return {
    name,
    endpoints: { judge: { base_url: url, model: 'judge', concurrency: 4 } },
    datasets: { vlrb: { path: data, ...(limit !== undefined && { limit }) } },
    stages: [{ id: 'eval', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge', bootstrap: 50 } }],
  };
}

/** Ten VL-RewardBench records with one broken line in the middle: 10 items, 1 skipped row. */
function datasetWithABadRow(): string {
  const lines = readFileSync(DATA, 'utf8').split('\n').slice(0, 10);
  lines.splice(4, 0, '{"id": "broken", "query": ');
  return writeSpec(`${lines.join('\n')}\n`, 'data.jsonl');
}

const STACK_TRACE = /^\s+at .+\(.+:\d+:\d+\)$/m;

describe('spec errors are spec errors: exit 2, file named, said once', () => {
  it('a YAML alias bomb (billion laughs) exits 2 naming the file, without a stack trace', async () => {
    const levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 9; i++) {
      const prev = String.fromCharCode(96 + i);
      const cur = String.fromCharCode(97 + i);
      levels.push(`${cur}: &${cur} [${Array.from({ length: 9 }, () => `*${prev}`).join(',')}]`);
    }
    const path = writeSpec(`name: bomb\n${levels.join('\n')}\nstages: [{ id: x, uses: evaluate }]\n`);
    const before = await experimentRowCounts(db, 'bomb');
    const res = await runCli(['run', path]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain(`judgeflow run: ${relative(REPO, path)}: YAML: `);
    expect(res.stderr).toMatch(/alias/i);
    expect(res.stderr).not.toMatch(STACK_TRACE);
    expect(await experimentRowCounts(db, 'bomb')).toEqual(before);
  });

  it('an unparseable --set value is a spec error too (exit 2)', async () => {
    const res = await runCli(['run', writeSpec(evalSpec(uniqueName('set'), sim.url)), '--set', 'seed=[1, 2']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/--set: seed=\[1, 2: the value is not valid YAML/);
    expect(res.stderr).not.toMatch(STACK_TRACE);
  });

  it('a missing dataset file is reported once, even when two stages use it', async () => {
    const spec = evalSpec(uniqueName('missing'), sim.url, '/nonexistent/data.jsonl');
    spec.stages.push({ id: 'eval-2', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge', bootstrap: 50 } });
    const res = await runCli(['run', writeSpec(spec)]);
    expect(res.code).toBe(2);
    expect(res.stderr.match(/\/nonexistent\/data\.jsonl/g)).toHaveLength(1);
    expect(res.stderr).toMatch(/datasets\.vlrb\.path: file not found: \/nonexistent\/data\.jsonl/);
  });

  it('skipped rows: a warning by default; exit 2 with --strict or `strict: true`, nothing written', async () => {
    const data = datasetWithABadRow();
    const spec = evalSpec(uniqueName('strict'), sim.url, data, undefined);
    const path = writeSpec(spec);
    const before = await experimentRowCounts(db, spec.name);
    const flag = await runCli(['run', path, '--strict']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(
      new RegExp(`${relative(REPO, path)}: datasets\\.vlrb: 1 row\\(s\\) skipped: line 5: invalid JSON.*\\(strict: no row may be skipped`),
    );
    const field = await runCli(['run', writeSpec({ ...spec, strict: true })]);
    expect(field.code).toBe(2);
    expect(field.stderr).toMatch(/datasets\.vlrb: 1 row\(s\) skipped: line 5: .*strict/);
    expect(await experimentRowCounts(db, spec.name)).toEqual(before);
    // Without strict it only warns (and --detach returns at once).
    const lenient = await runCli(['run', path, '--detach', '--json'], { JUDGEFLOW_TASK_QUEUE: uniqueName('nobody') });
    expect(lenient.code).toBe(0);
    expect(lenient.stderr).toMatch(/warning: .*datasets\.vlrb: 1 row\(s\) skipped: line 5/);
    // Nobody polls its queue: end it without a worker.
    const t = await testClient();
    await t.client.workflow.getHandle(JSON.parse(lenient.stdout).runId as string).terminate('test cleanup');
    await t.close();
  });
});

describe('following a run', () => {
  const tq = uniqueName('follow');
  let worker: RunningWorker;
  beforeAll(async () => {
    worker = await startTestWorker(tq);
  });
  afterAll(async () => {
    await worker?.shutdown();
  });

  it('the results header says "10 of 11 items" when a dataset row was skipped', async () => {
    const res = await runCli(['run', writeSpec(evalSpec(uniqueName('coverage'), sim.url, datasetWithABadRow(), undefined))], { JUDGEFLOW_TASK_QUEUE: tq });
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/results of run \S+ \(10 of 11 items \(1 dataset row skipped\); accuracy %/);
    // A run without skipped rows keeps the plain header.
    const clean = await runCli(['run', writeSpec(evalSpec(uniqueName('coverage-clean'), sim.url))], { JUDGEFLOW_TASK_QUEUE: tq });
    expect(clean.code).toBe(0);
    expect(clean.stdout).toMatch(/results of run \S+ \(accuracy %/);
  });

  it('Ctrl-C while following: says the run goes on and how to re-attach, exits 130; the run completes', async () => {
    const path = writeSpec(evalSpec(uniqueName('sigint'), slowSim.url, DATA, 40));
    const child = spawn(process.execPath, [join(REPO, 'bin', 'judgeflow.mjs'), 'run', path], {
      cwd: REPO,
      env: { ...process.env, DATABASE_URL: testDatabaseUrl(), TEMPORAL_ADDRESS: testTemporalAddress(), JUDGEFLOW_TASK_QUEUE: tq },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const started = new Promise<string>((resolve) =>
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        const m = /run (\S+): started/.exec(stderr);
        if (m) resolve(m[1]!);
      }),
    );
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    const runId = await started;
    await new Promise((r) => setTimeout(r, 1_500));
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toContain(`stopped following run ${runId} (Ctrl-C); the run goes on. Follow it again: judgeflow status ${runId} --watch`);
    expect(stdout).not.toMatch(/results of run/);
    const run = await db.pool.query<{ status: string }>('select status from runs where id = $1', [runId]);
    expect(run.rows[0]!.status).toBe('running');

    const again = await runCli(['status', runId, '--watch'], { JUDGEFLOW_TASK_QUEUE: tq });
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`run ${runId}: succeeded`));
    expect(again.stdout).toMatch(/eval\s+40\/40\s+\d+\.\d \[/);
  });
});
