/**
 * The `serve` stage with a real model: SmolLM2-135M-Instruct (the folder scripts/prepare-smollm2.py
 * prepares) served by `transformers serve`, started by the stage's activity on a free port, judged
 * through by an evaluate stage with `judge: { from: serve }`. The server is stopped once the stage
 * after it has finished (its process and port are gone); a second run starts a new server (a new
 * port) and sends nothing, as the cache keys on the model's digest; cancelling a run stops it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { launchRun } from '../../cli/launch.js';
import { isTcpOpen } from '../../runtime/net.js';
import '../../spec/builtin.js';
import type { DbHandle } from '../../db/client.js';
import type { RunningWorker } from '../../worker.js';
import { REPO, openTestDb, startTestWorker, testClient, uniqueName } from '../helpers/env.js';
import { specFromObject } from '../helpers/spec.js';
import { SMOLLM2_DIR } from '../realmodel/serve.js';

const DATA = `${REPO}/data/vl-rewardbench/data.jsonl`;
const TQ = uniqueName('serve');
let db: DbHandle;
let worker: RunningWorker;
let client: Client;
let closeClient: () => Promise<void>;

interface ServerRow {
  state: string;
  base_url: string | null;
  port: number | null;
  pid: number | null;
  attempt: number;
  identity: string;
  model: string;
  artifact_id: number;
  events: { state: string; message?: string }[];
  stopped_at: Date | null;
}

const serveSpec = (name: string, items: number) => ({
  name,
  seed: 5,
  datasets: { vlrb: { path: DATA, limit: items } },
  stages: [
    {
      id: 'serve-base',
      uses: 'serve',
      with: { model: { path: SMOLLM2_DIR }, env: { OMP_NUM_THREADS: '1', HF_HUB_OFFLINE: '1' }, concurrency: 2, startup_timeout_s: 300 },
    },
    {
      id: 'eval',
      uses: 'evaluate',
      needs: ['serve-base'],
      with: { dataset: 'vlrb', judge: { from: 'serve-base' }, positions: 'none', temperature: 0, max_tokens: 24, bootstrap: 50 },
    },
  ],
});

async function server(runId: string): Promise<ServerRow> {
  return (await db.pool.query<ServerRow>("select * from servers where run_id = $1 and stage_id = 'serve-base'", [runId])).rows[0]!;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 300_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function requestCounts(runId: string) {
  return (
    await db.pool.query<{ n: number; succeeded: number; cached: number }>(
      `select count(*)::int as n, count(*) filter (where r.status = 'succeeded')::int as succeeded, count(*) filter (where r.cached)::int as cached
       from inference_requests q left join inference_results r on r.request_id = q.id where q.run_id = $1 and q.stage_id = 'eval'`,
      [runId],
    )
  ).rows[0]!;
}

beforeAll(async () => {
  db = await openTestDb();
  worker = await startTestWorker(TQ);
  ({ client, close: closeClient } = await testClient());
}, 120_000);
afterAll(async () => {
  await worker?.shutdown();
  await closeClient?.();
  await db?.close();
});

describe('serve: a model folder as an endpoint for the stages after it', () => {
  const name = uniqueName('serve-base');
  let first: ServerRow;

  it('judges through the served model, then stops the server: process and port gone', async () => {
    const loaded = await specFromObject(serveSpec(name, 4));
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
    await client.workflow.getHandle(runId).result();
    const js = (await db.pool.query<{ status: string }>("select status from judgments where run_id = $1 and stage_id = 'eval'", [runId])).rows;
    expect(js).toHaveLength(4);
    expect(js.filter((j) => j.status === 'failed')).toHaveLength(0);
    expect(await requestCounts(runId)).toEqual({ n: 4, succeeded: 4, cached: 0 });

    first = await until('the server to stop', async () => {
      const s = await server(runId);
      return s.state === 'stopped' ? s : undefined;
    });
    expect(first.model).toBe(SMOLLM2_DIR);
    expect(first.identity).toMatch(/^folder:[0-9a-f]{64}$/);
    expect(first.attempt).toBe(1);
    expect(first.events.map((e) => e.state)).toEqual(['starting', 'ready', 'stopped']);
    // Whichever it saw first: the stage after it finished, or (a moment later) the whole run.
    expect(['every stage after it finished (eval)', 'the run succeeded']).toContain(first.events[2]!.message);
    expect(alive(first.pid!)).toBe(false);
    expect(await isTcpOpen('127.0.0.1', first.port!)).toBe(false);
    const art = (await db.pool.query<{ kind: string; content_hash: string }>('select kind, content_hash from artifacts where id = $1', [first.artifact_id]))
      .rows[0];
    expect(art).toEqual({ kind: 'endpoint', content_hash: first.identity });
  }, 900_000);

  it('a second run starts a new server and sends nothing: the cache keys on the model, not the port', async () => {
    const loaded = await specFromObject(serveSpec(name, 4));
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ, label: 'again' });
    await client.workflow.getHandle(runId).result();
    expect(await requestCounts(runId)).toEqual({ n: 4, succeeded: 4, cached: 4 });
    const again = await until('the second server to stop', async () => {
      const s = await server(runId);
      return s.state === 'stopped' ? s : undefined;
    });
    expect(again.identity).toBe(first.identity);
    expect(again.pid).not.toBe(first.pid);
    expect(alive(again.pid!)).toBe(false);
  }, 900_000);

  it('cancelling the run stops the server while the stage after it still runs', async () => {
    const loaded = await specFromObject({ ...serveSpec(uniqueName('serve-cancel'), 60), seed: 6 });
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
    const ready = await until('the server to be ready', async () => {
      const s = (await db.pool.query<ServerRow>("select * from servers where run_id = $1 and stage_id = 'serve-base'", [runId])).rows[0];
      return s?.state === 'ready' ? s : undefined;
    });
    expect(alive(ready.pid!)).toBe(true);
    await until('the first judged request', async () => ((await requestCounts(runId)).succeeded > 0 ? true : undefined));
    await client.workflow.getHandle(runId).cancel();
    const stopped = await until('the server to stop', async () => {
      const s = await server(runId);
      return s.state === 'stopped' ? s : undefined;
    });
    expect(stopped.events.at(-1)!.message).toBe('the run cancelled');
    expect(alive(ready.pid!)).toBe(false);
    expect(await isTcpOpen('127.0.0.1', ready.port!)).toBe(false);
    const run = (await db.pool.query<{ status: string }>('select status from runs where id = $1', [runId])).rows[0];
    expect(run!.status).toBe('cancelled');
    expect((await requestCounts(runId)).succeeded).toBeLessThan(60);
  }, 900_000);
});
