/**
 * A Postgres outage mid-run must not lose outputs. An evaluate run writes to a throwaway embedded
 * PostgreSQL (the project's own runtime, in a temp dir on a free port) that is killed with SIGKILL
 * three times while requests are in flight, and restarted on the same data directory after a
 * pause. The run must end with every succeeded result holding its output, and with the same
 * judgments and headline as an uninterrupted run of the same spec and seed.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { launchRun } from '../../cli/launch.js';
import { openDb, type DbHandle } from '../../db/client.js';
import { InferenceGateway } from '../../activities/inference/gateway.js';
import { loadResults } from '../../activities/inference/store.js';
import { ensurePostgres } from '../../runtime/embedded-postgres.js';
import { readRecord } from '../../runtime/daemon.js';
import { freePort } from '../../runtime/net.js';
import type { RuntimeConfig } from '../../runtime/config.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { startWorker, type RunningWorker } from '../../worker.js';
import { REPO, openTestDb, startTestWorker, testBundle, testClient, testTemporalAddress, uniqueName } from '../helpers/env.js';
import { specFromObject } from '../helpers/spec.js';

const DATA = `${REPO}/data/vl-rewardbench/data.jsonl`;

let sim: SimHandle;
let client: Client;
let closeClient: () => Promise<void>;
let stateDir: string;
let cfg: RuntimeConfig;

beforeAll(async () => {
  // 40 ms a request at concurrency 16: the 5,000 requests take long enough to be cut three times.
  sim = await startSimulator({
    seed: 21,
    truth: DATA,
    latency: { kind: 'fixed', ms: 40 },
    models: { 'judge-80': { behaviour: 'judge', accuracy: 0.8 }, 'judge-first': { behaviour: 'judge', first_bias: 1 } },
  });
  ({ client, close: closeClient } = await testClient());
  stateDir = mkdtempSync(join(tmpdir(), 'jf-pg-outage-'));
  // mkdtemp makes it 0700; the `postgres` OS user (we may be root) must enter it.
  chmodSync(stateDir, 0o755);
  cfg = { stateDir, namespace: 'default', taskQueue: 'unused', pgPort: await freePort(), temporalPort: 0, temporalUiPort: 0 };
});
afterAll(async () => {
  const record = readRecord(stateDir, 'postgres');
  if (record) {
    try {
      process.kill(record.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await closeClient?.();
  await sim?.close();
  rmSync(stateDir, { recursive: true, force: true });
});

function spec(name: string) {
  const endpoint = (model: string) => ({ base_url: sim.url, model, concurrency: 16 });
  return specFromObject({
    name,
    seed: 9,
    endpoints: { 'judge-80': endpoint('judge-80'), 'judge-first': endpoint('judge-first') },
    datasets: { vlrb: { path: DATA } },
    stages: [
      { id: 'unbiased', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge-80', bootstrap: 100 } },
      { id: 'first', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge-first', bootstrap: 100 } },
    ],
  });
}

/** One short-lived connection per question: the pool of the worker is what is under test. */
async function query<T extends pg.QueryResultRow>(url: string, text: string, values: unknown[]): Promise<T[] | undefined> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return (await c.query<T>(text, values)).rows;
  } catch {
    return undefined;
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function resultsOf(url: string, runId: string): Promise<number> {
  const rows = await query<{ n: number }>(
    url,
    'select count(*)::int as n from inference_results r join inference_requests q on q.id = r.request_id where q.run_id = $1',
    [runId],
  );
  return rows?.[0]?.n ?? -1;
}

async function judgmentsOf(db: DbHandle, runId: string) {
  const res = await db.pool.query<{ stage_id: string; item_key: string; view: number; sample: number; status: string; chosen_position: number | null }>(
    'select stage_id, item_key, view, sample, status, chosen_position from judgments where run_id = $1 order by stage_id, item_key, view, sample',
    [runId],
  );
  return res.rows;
}

async function headlineOf(db: DbHandle, runId: string) {
  const res = await db.pool.query<{ stage_id: string; value: number; n: number }>(
    `select stage_id, value, n from metrics where run_id = $1 and metric = 'headline_accuracy' and scope = 'overall' order by stage_id`,
    [runId],
  );
  return res.rows;
}

/** Succeeded results whose output is not in inference_cache: what the outage used to lose. */
async function orphans(db: DbHandle, runId: string): Promise<number> {
  const res = await db.pool.query<{ n: number }>(
    `select count(*)::int as n from inference_requests q join inference_results r on r.request_id = q.id
     left join inference_cache c on c.key = q.cache_key
     where q.run_id = $1 and r.status = 'succeeded' and c.key is null`,
    [runId],
  );
  return res.rows[0]!.n;
}

describe('a Postgres outage mid-run', () => {
  it('kill -9 of Postgres three times mid-inference: no output lost, judgments equal an uninterrupted run', async () => {
    const name = uniqueName('pg-outage');

    // The uninterrupted run, on the test database.
    const refDb = await openTestDb();
    const refTq = uniqueName('pg-ref');
    const refWorker = await startTestWorker(refTq);
    let ref: { runId: string };
    try {
      ref = await launchRun({ loaded: await spec(name), label: 'uninterrupted', db: refDb.db, client, taskQueue: refTq });
      await client.workflow.getHandle(ref.runId).result();
    } finally {
      await refWorker.shutdown();
    }
    const refJudgments = await judgmentsOf(refDb, ref.runId);
    expect(refJudgments).toHaveLength(5000);
    expect(refJudgments.filter((j) => j.status !== 'parsed')).toHaveLength(0);

    // The same spec and seed on a throwaway Postgres that is killed mid-run.
    const { databaseUrl } = await ensurePostgres(cfg, () => undefined);
    const tq = uniqueName('pg-kill');
    let worker: RunningWorker | undefined;
    const db = openDb(databaseUrl);
    try {
      worker = await startWorker({
        temporalAddress: testTemporalAddress(),
        namespace: 'default',
        taskQueue: tq,
        databaseUrl,
        workflowBundle: await testBundle(),
        gateway: new InferenceGateway({ backoff: { baseMs: 100, maxMs: 1000 } }),
      });
      const { runId } = await launchRun({ loaded: await spec(name), label: 'outages', db: db.db, client, taskQueue: tq });
      const done = client.workflow.getHandle(runId).result();
      let kills = 0;
      for (const at of [1000, 2500, 4000]) {
        const deadline = Date.now() + 120_000;
        let n = 0;
        while ((n = await resultsOf(databaseUrl, runId)) < at) {
          if (Date.now() > deadline) throw new Error(`no progress to ${at} results (at ${n})`);
          await new Promise((r) => setTimeout(r, 50));
        }
        // Only mid-inference kills count: the stage must still be sending requests.
        if (n >= 5000) break;
        const record = readRecord(stateDir, 'postgres');
        expect(record).toBeDefined();
        process.kill(record!.pid, 'SIGKILL');
        kills++;
        await new Promise((r) => setTimeout(r, 5000));
        await ensurePostgres(cfg, () => undefined);
      }
      expect(kills).toBe(3);
      await done;

      expect(await orphans(db, runId)).toBe(0);
      const judged = await judgmentsOf(db, runId);
      expect(judged).toEqual(refJudgments);
      expect(await headlineOf(db, runId)).toEqual(await headlineOf(refDb, ref.runId));
      for (const stageId of ['unbiased', 'first']) {
        const outputs = async (h: DbHandle, id: string) => (await loadResults(h.db, id, stageId)).map((r) => [r.itemKey, r.status, r.content]);
        expect(await outputs(db, runId)).toEqual(await outputs(refDb, ref.runId));
      }
    } finally {
      await worker?.shutdown();
      await db.close();
      await refDb.close();
    }
  }, 600_000);
});
