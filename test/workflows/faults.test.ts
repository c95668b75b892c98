import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import { launchRun } from '../../cli/launch.js';
import { runs, stages } from '../../db/schema/index.js';
import { findTemporalCli } from '../../runtime/temporal-cli.js';
import { freePort, waitForTcp } from '../../runtime/net.js';
import { REPO, openTestDb, startTestWorker, testClient, testDatabaseUrl, testTemporalAddress, uniqueName } from '../helpers/env.js';
import { specFromObject } from '../helpers/spec.js';
import type { DbHandle } from '../../db/client.js';

let db: DbHandle;
beforeAll(async () => {
  db = await openTestDb();
});
afterAll(async () => {
  await db?.close();
});

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function spawnWorker(taskQueue: string, temporalAddress: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'test', 'helpers', 'worker-child.ts')], {
    cwd: REPO,
    env: { ...process.env, DATABASE_URL: testDatabaseUrl(), TEMPORAL_ADDRESS: temporalAddress, TASK_QUEUE: taskQueue },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`worker child exited early (${code})`)));
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('worker-ready')) resolve(child);
    });
  });
}

async function itemCount(runId: string, stageId: string): Promise<{ n: number; distinct: number; pids: number }> {
  const r = await db.pool.query(
    'select count(*)::int as n, count(distinct idx)::int as distinct, count(distinct worker_pid)::int as pids from test_items where run_id = $1 and stage_id = $2',
    [runId, stageId],
  );
  return r.rows[0];
}

describe('faults', () => {
  it('kill -9 of the worker mid-stage: a new worker finishes the run, no duplicate rows', async () => {
    const tq = uniqueName('kill9');
    const { client, close } = await testClient();
    const child = await spawnWorker(tq, testTemporalAddress());
    const loaded = await specFromObject({
      name: uniqueName('kill9'),
      stages: [
        { id: 'work', uses: 'test-work', with: { items: 30, ms: 100, batch: 10 } },
        { id: 'after', uses: 'test-work', needs: ['work'], with: { items: 2, ms: 10 } },
      ],
    });
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    await waitFor('items from the first worker', async () => (await itemCount(runId, 'work')).n >= 5);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const before = await itemCount(runId, 'work');
    expect(before.n).toBeLessThan(30);

    const worker = await startTestWorker(tq);
    try {
      await client.workflow.getHandle(runId).result();
    } finally {
      await worker.shutdown();
      await close();
    }
    const after = await itemCount(runId, 'work');
    expect(after.distinct).toBe(30);
    expect(after.n).toBe(30);
    expect(after.pids).toBe(2);
    const rows = await db.db.select().from(stages).where(eq(stages.runId, runId));
    expect(rows.map((r) => [r.stageId, r.status, r.attempts]).sort()).toEqual([
      ['after', 'succeeded', 1],
      ['work', 'succeeded', 1],
    ]);
    const runRows = await db.db.select().from(runs).where(eq(runs.id, runId));
    expect(runRows).toHaveLength(1);
    expect(runRows[0]!.status).toBe('succeeded');
  });

  it('restarting the Temporal dev server mid-run (same db file): the run completes', async () => {
    const bin = findTemporalCli();
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'jf-restart-'));
    const dbFile = join(dir, 'temporal.db');
    const address = `127.0.0.1:${port}`;
    const startServer = async () => {
      const p = spawn(bin, ['server', 'start-dev', '--headless', '--port', String(port), '--db-filename', dbFile, '--log-level', 'error'], { stdio: 'ignore' });
      await waitForTcp('127.0.0.1', port, 30_000);
      return p;
    };
    let server = await startServer();
    const tq = uniqueName('restart');
    const worker = await startTestWorker(tq, address);
    let { client, close } = await testClient(address);
    try {
      const loaded = await specFromObject({
        name: uniqueName('restart'),
        stages: [
          { id: 'one', uses: 'test-work', with: { items: 20, ms: 100, batch: 4 } },
          { id: 'two', uses: 'test-work', needs: ['one'], with: { items: 4, ms: 50 } },
        ],
      });
      const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
      await waitFor('progress before the restart', async () => (await itemCount(runId, 'one')).n >= 4);
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
      await close();
      await new Promise((r) => setTimeout(r, 1000));
      server = await startServer();
      ({ client, close } = await testClient(address));
      await client.workflow.getHandle(runId).result();
      expect(await itemCount(runId, 'one')).toMatchObject({ n: 20, distinct: 20 });
      expect(await itemCount(runId, 'two')).toMatchObject({ n: 4, distinct: 4 });
      const [run] = await db.db.select().from(runs).where(eq(runs.id, runId));
      expect(run!.status).toBe('succeeded');
    } finally {
      await worker.shutdown();
      await close();
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
