/**
 * A worker holding a server is killed -9: the server's activity runs again on another worker of
 * the stage's queue after its heartbeat timeout, which stops the orphaned server (same host) and
 * starts a new one on a new port, and the evaluate stage after it finds the new URL and finishes
 * with every request answered. The "model" is the project's simulator (`judgeflow sim`) started as
 * the serve command, so the test costs no CPU for inference; `url:` (a server run by the user) is
 * checked against a simulator too.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { launchRun } from '../../cli/launch.js';
import { isTcpOpen } from '../../runtime/net.js';
import { loadSimConfig } from '../../sim/config.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import type { DbHandle } from '../../db/client.js';
import type { RunningWorker } from '../../worker.js';
import { REPO, openTestDb, startTestWorker, testClient, uniqueName } from '../helpers/env.js';
import { specFromObject } from '../helpers/spec.js';
import { spawnTrainWorker, startTrainWorker, waitFor } from '../train/helpers.js';

const DATA = `${REPO}/data/vl-rewardbench/data.jsonl`;
const TQ = uniqueName('serve-main');
const state = mkdtempSync(join(tmpdir(), 'jf-serve-restart-'));
const modelDir = join(state, 'model');
const simConfig = join(state, 'sim.yaml');
let db: DbHandle;
let worker: RunningWorker;
let client: Client;
let closeClient: () => Promise<void>;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  mkdirSync(modelDir);
  writeFileSync(join(modelDir, 'weights.txt'), 'stand-in weights\n');
  // 250 ms a request, one at a time: the stage outlives the kill and the heartbeat timeout.
  writeFileSync(simConfig, `seed: 3\nlatency: { kind: fixed, ms: 250 }\nmodels:\n  judge: { behaviour: judge, accuracy: 0.8 }\n`);
  db = await openTestDb();
  worker = await startTestWorker(TQ);
  ({ client, close: closeClient } = await testClient());
});
afterAll(async () => {
  await worker?.shutdown();
  await closeClient?.();
  await db?.close();
});

describe('serve: a dead worker', () => {
  const serveQueue = uniqueName('serve-q');
  let child: ChildProcess | undefined;
  let second: RunningWorker | undefined;
  afterAll(async () => {
    child?.kill('SIGKILL');
    await second?.shutdown();
  });

  it('restarts the server elsewhere on a new port; the stage after it reads the new URL and finishes', async () => {
    const items = 160;
    const loaded = await specFromObject({
      name: uniqueName('serve-restart'),
      seed: 8,
      datasets: { vlrb: { path: DATA, limit: items } },
      stages: [
        {
          id: 'serve',
          uses: 'serve',
          task_queue: serveQueue,
          with: {
            model: { path: modelDir },
            served_model: 'judge',
            command: [process.execPath, join(REPO, 'bin', 'judgeflow.mjs'), 'sim', '--port', '{port}', '--config', simConfig],
            concurrency: 1,
            startup_timeout_s: 120,
          },
        },
        {
          id: 'eval',
          uses: 'evaluate',
          needs: ['serve'],
          with: { dataset: 'vlrb', judge: { from: 'serve' }, positions: 'none', bootstrap: 0, chunk_size: 40 },
        },
      ],
    });
    child = await spawnTrainWorker(serveQueue, state);
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
    const q = async () =>
      (
        await db.pool.query<{
          state: string;
          pid: number | null;
          port: number | null;
          attempt: number;
          events: { state: string; at: string; message?: string }[];
        }>("select state, pid, port, attempt, events from servers where run_id = $1 and stage_id = 'serve'", [runId])
      ).rows[0];
    const answered = async () =>
      (
        await db.pool.query<{ n: number }>(
          "select count(*)::int as n from inference_requests x join inference_results r on r.request_id = x.id where x.run_id = $1 and x.stage_id = 'eval' and r.status = 'succeeded'",
          [runId],
        )
      ).rows[0]!.n;
    const first = await waitFor('the server to be ready', 120_000, async () => {
      const s = await q();
      return s?.state === 'ready' ? s : undefined;
    });
    await waitFor('some answers', 120_000, async () => (await answered()) >= 5);
    child.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    child = undefined;
    // The orphaned server keeps running until a new attempt of the activity stops it.
    expect(alive(first.pid!)).toBe(true);
    second = await startTrainWorker(serveQueue, { stateDir: state });
    const res = await client.workflow.getHandle(runId).result();
    expect(res.status).toBe('succeeded');

    const after = await waitFor('the server to stop', 60_000, async () => {
      const s = await q();
      return s?.state === 'stopped' ? s : undefined;
    });
    expect(after.attempt).toBe(2);
    expect(after.port).not.toBe(first.port);
    expect(after.events.map((e) => e.state)).toEqual(['starting', 'ready', 'restarting', 'ready', 'stopped']);
    expect(after.events[2]!.message).toBe(`start 2: the previous server's worker stopped heartbeating (killed its process ${first.pid})`);
    expect(alive(first.pid!)).toBe(false);
    expect(alive(after.pid!)).toBe(false);
    expect(await isTcpOpen('127.0.0.1', after.port!)).toBe(false);
    // Every request answered, some of them by the new server (after it was ready).
    const counts = (
      await db.pool.query<{ n: number; ok: number; late: number }>(
        `select count(*)::int as n, count(*) filter (where r.status = 'succeeded')::int as ok,
                count(*) filter (where r.finished_at > $2::timestamptz)::int as late
         from inference_requests x left join inference_results r on r.request_id = x.id where x.run_id = $1 and x.stage_id = 'eval'`,
        [runId, after.events[3]!.at],
      )
    ).rows[0]!;
    expect(counts.n).toBe(items);
    expect(counts.ok).toBe(items);
    expect(counts.late).toBeGreaterThan(0);
  }, 600_000);
});

describe('serve: a server the user runs (url)', () => {
  let sim: SimHandle;
  beforeAll(async () => {
    sim = await startSimulator(loadSimConfig(simConfig));
  });
  afterAll(async () => {
    await sim?.close();
  });

  it('is checked at /v1/models, judged through, and neither started nor stopped', async () => {
    const spec = (served: string) => ({
      name: uniqueName('serve-url'),
      seed: 9,
      datasets: { vlrb: { path: DATA, limit: 6 } },
      stages: [
        { id: 'ext', uses: 'serve', with: { model: { path: modelDir }, url: sim.url, served_model: served } },
        { id: 'eval', uses: 'evaluate', needs: ['ext'], with: { dataset: 'vlrb', judge: { from: 'ext' }, positions: 'none', bootstrap: 0 } },
      ],
    });
    const { runId } = await launchRun({ loaded: await specFromObject(spec('judge')), db: db.db, client, taskQueue: TQ });
    await client.workflow.getHandle(runId).result();
    const row = (
      await db.pool.query<{ state: string; base_url: string; pid: number | null }>('select state, base_url, pid from servers where run_id = $1', [runId])
    ).rows[0]!;
    expect(row).toEqual({ state: 'external', base_url: sim.url.replace(/\/+$/, ''), pid: null });
    const n = (
      await db.pool.query<{ n: number }>("select count(*)::int as n from judgments where run_id = $1 and stage_id = 'eval' and status <> 'failed'", [runId])
    ).rows[0]!.n;
    expect(n).toBe(6);
    expect(await isTcpOpen('127.0.0.1', Number(new URL(sim.url).port))).toBe(true);

    // A model the server does not list fails the stage, naming what it lists; the stage after it is skipped.
    const bad = await launchRun({ loaded: await specFromObject(spec('nope')), db: db.db, client, taskQueue: TQ });
    await expect(client.workflow.getHandle(bad.runId).result()).rejects.toThrow();
    const stages = (
      await db.pool.query<{ stage_id: string; status: string; error: string | null }>(
        'select stage_id, status, error from stages where run_id = $1 order by stage_id',
        [bad.runId],
      )
    ).rows;
    expect(stages[1]).toMatchObject({ stage_id: 'ext', status: 'failed' });
    expect(stages[1]!.error).toContain('lists judge, not nope (set with.served_model to the id it lists)');
    expect(stages[0]).toMatchObject({ stage_id: 'eval', status: 'skipped' });
  });
});
