/**
 * `runInference` on a real Temporal dev server: a fault storm, endpoint-fatal errors mid-batch,
 * and a worker killed with SIGKILL mid-batch. Real Postgres, the simulator over HTTP, the real
 * `openai` client.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { openDb, type DbHandle } from '../../db/client.js';
import { startSimulator } from '../../sim/server.js';
import { loadResults, stageUsage, type AttemptEvent } from '../../activities/inference/index.js';
import type { inferenceTestWorkflow, InferenceTestInput } from './workflows.js';
import { batchRows, endpoint, inferenceBundle, prepareBatch, requireEnv, spawnSimulator, startInferenceWorker, uniqueId } from './helpers.js';

/** Rows whose results arrived while a batched write was in flight when the worker died. */

let db: DbHandle;
let connection: Connection;
let client: Client;

beforeAll(async () => {
  db = openDb(requireEnv('JF_TEST_DATABASE_URL'));
  connection = await Connection.connect({ address: requireEnv('JF_TEST_TEMPORAL_ADDRESS') });
  client = new Client({ connection });
});
afterAll(async () => {
  await connection?.close();
  await db?.close();
});

function run(taskQueue: string, input: InferenceTestInput, workflowId = uniqueId('wf')) {
  return client.workflow.start<typeof inferenceTestWorkflow>('inferenceTestWorkflow', { taskQueue, workflowId, args: [input] });
}

async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const cause = (err as WorkflowFailedError).cause;
  expect(cause).toBeInstanceOf(ApplicationFailure);
  return cause as ApplicationFailure;
}

describe('runInference', () => {
  it('5,000 requests through 429s, 500s, malformed bodies and hangs: every row finished once, retry-after honoured', async () => {
    const sim = await spawnSimulator({
      seed: 3,
      latency: { kind: 'fixed', ms: 5 },
      faults: { rate_429: 0.05, retry_after_s: 1, rate_500: 0.05, rate_malformed: 0.02, rate_hang: 0.01, hang_ms: 60_000, rate_empty: 0.01 },
      models: { policy: { behaviour: 'policy' } },
    });
    const events: AttemptEvent[] = [];
    const taskQueue = uniqueId('inf-faults');
    const worker = await startInferenceWorker(db.db, taskQueue, { backoff: { baseMs: 200, maxMs: 2000 }, onAttempt: (e) => events.push(e) });
    try {
      const runId = uniqueId('storm');
      const concurrency = 256;
      const ep = endpoint(sim.url, { concurrency, timeout_s: 2, max_attempts: 6, max_retry_after_s: 5 });
      const range = await prepareBatch(db.db, batchRows(runId, 'gen', 5000), ep);
      expect(range.count).toBe(5000);

      const t0 = Date.now();
      const result = await (await run(taskQueue, { runId, stageId: 'gen', endpointName: 'ep', endpoint: ep, ...range, total: range.count })).result();
      const seconds = (Date.now() - t0) / 1000;
      const stats = await sim.stats();

      // Every row finished exactly once: 5,000 rows, none pending, failures carry a reason.
      const rows = await loadResults(db.db, runId, 'gen');
      expect(rows).toHaveLength(5000);
      expect(new Set(rows.map((r) => r.itemKey)).size).toBe(5000);
      expect(rows.filter((r) => r.status === 'pending')).toHaveLength(0);
      for (const r of rows.filter((x) => x.status === 'failed')) expect(r.error).toMatch(/^transient: .* after 6 attempts$/);
      expect(result.succeeded + result.failed).toBe(5000);
      expect(result.progress.at(-1)).toEqual({ done: 5000, failed: result.failed, total: 5000 });

      // The faults happened, and were retried: attempts on rows add up to what the server saw.
      expect(stats.faults['429']).toBeGreaterThan(150);
      expect(stats.faults['500']).toBeGreaterThan(150);
      expect(stats.faults.malformed).toBeGreaterThan(50);
      expect(stats.faults.hang).toBeGreaterThan(20);
      const attempts = rows.reduce((s, r) => s + r.attempts, 0);
      expect(attempts).toBe(stats.requests);
      expect(result.sent).toBe(stats.requests);
      // Empty content is a valid output, stored as such.
      expect(rows.filter((r) => r.status === 'succeeded' && r.content === '').length).toBeGreaterThan(10);

      // The in-flight limit held.
      expect(stats.maxInFlight).toBeLessThanOrEqual(concurrency);

      // retry-after honoured: a 429'd body is not sent again before its wait (>= 1 s) is over,
      // and no request of the endpoint starts during a pause.
      const byKey = new Map<string, AttemptEvent[]>();
      for (const e of events) byKey.set(e.key, [...(byKey.get(e.key) ?? []), e]);
      const limited = events.filter((e) => e.outcome === 'rate_limited');
      const outcomes: Record<string, number> = {};
      for (const e of events) outcomes[e.outcome] = (outcomes[e.outcome] ?? 0) + 1;
      // (A 429 that reached the client after its timeout counts as a timeout.)
      expect(limited.length).toBeGreaterThan(0.9 * stats.faults['429']!);
      expect(limited.length).toBeLessThanOrEqual(stats.faults['429']!);
      for (const e of limited) {
        expect(e.waitMs).toBeGreaterThanOrEqual(1000);
        const next = byKey.get(e.key)!.find((x) => x.attempt === e.attempt + 1);
        if (next) expect(next.startedAt - e.endedAt).toBeGreaterThanOrEqual(e.waitMs!);
      }
      const starts = events.map((e) => e.startedAt).sort((a, b) => a - b);
      const duringPause = limited.filter((e) => starts.some((s) => s > e.endedAt && s < e.endedAt + e.waitMs!));
      expect(duringPause).toHaveLength(0);
      console.log(
        `fault storm: ${seconds.toFixed(1)} s, ${stats.requests} HTTP requests, faults ${JSON.stringify(stats.faults)}, ` +
          `failed ${result.failed}, maxInFlight ${stats.maxInFlight}`,
      );
    } finally {
      await worker.shutdown();
      await sim.close();
    }
  });

  it('a rejected key or an unknown model fails the run at once with a clear message', async () => {
    const sim = await startSimulator({ api_key: 'sk-right', latency: { kind: 'fixed', ms: 2 }, models: { policy: { behaviour: 'policy' } } });
    const taskQueue = uniqueId('inf-fatal');
    const worker = await startInferenceWorker(db.db, taskQueue, { env: { JF_TEST_KEY: 'sk-wrong', JF_GOOD_KEY: 'sk-right' } });
    try {
      const runId = uniqueId('fatal');
      const bad = endpoint(sim.url, { concurrency: 8, api_key_env: 'JF_TEST_KEY' });
      const range = await prepareBatch(db.db, batchRows(runId, 'auth', 3000), bad);
      const t0 = Date.now();
      const failure = await failureOf(run(taskQueue, { runId, stageId: 'auth', endpointName: 'ep', endpoint: bad, ...range }).then((h) => h.result()));
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(failure.type).toBe('EndpointAuthError');
      expect(failure.message).toBe(`endpoint "ep" (${sim.url}): the API key was rejected (401); check the env var JF_TEST_KEY`);
      // Stopped at once: at most one in-flight window per chunk activity, not 3,000 failures.
      expect(sim.stats().requests).toBeLessThanOrEqual(2 * 8);
      expect((await stageUsage(db.db, runId, 'auth')).pending).toBe(3000);

      const unknown = endpoint(sim.url, { concurrency: 8, api_key_env: 'JF_GOOD_KEY', model: 'foo' });
      const range2 = await prepareBatch(db.db, batchRows(runId, 'model', 3000), unknown);
      const failure2 = await failureOf(run(taskQueue, { runId, stageId: 'model', endpointName: 'ep', endpoint: unknown, ...range2 }).then((h) => h.result()));
      expect(failure2.type).toBe('EndpointModelNotFoundError');
      expect(failure2.message).toContain(`endpoint "ep": model "foo" is not served at ${sim.url}`);
      expect((await stageUsage(db.db, runId, 'model')).pending).toBe(3000);
    } finally {
      await worker.shutdown();
      await sim.close();
    }
  });

  it('kill -9 of the worker mid-batch: a new worker resumes, re-sending at most one in-flight window', async () => {
    const sim = await startSimulator({ latency: { kind: 'fixed', ms: 40 }, models: { policy: { behaviour: 'policy' } } });
    const dir = mkdtempSync(join(tmpdir(), 'jf-inf-kill-'));
    const bundlePath = join(dir, 'workflows.js');
    writeFileSync(bundlePath, (await inferenceBundle()).code);
    const taskQueue = uniqueId('inf-kill');
    const children: ChildProcess[] = [];
    const spawnWorker = async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./worker-child.ts', import.meta.url))], {
        env: {
          ...process.env,
          DATABASE_URL: requireEnv('JF_TEST_DATABASE_URL'),
          TEMPORAL_ADDRESS: requireEnv('JF_TEST_TEMPORAL_ADDRESS'),
          TASK_QUEUE: taskQueue,
          BUNDLE_PATH: bundlePath,
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.push(child);
      await new Promise<void>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`worker-child exited early (${code})`)));
        child.stdout!.on('data', (d: Buffer) => {
          if (d.toString().includes('worker-ready')) resolve();
        });
      });
      return child;
    };
    try {
      const runId = uniqueId('kill');
      const concurrency = 16;
      const N = 2000;
      const ep = endpoint(sim.url, { concurrency, timeout_s: 10 });
      const range = await prepareBatch(db.db, batchRows(runId, 'gen', N), ep);
      const first = await spawnWorker();
      const handle = await run(taskQueue, { runId, stageId: 'gen', endpointName: 'ep', endpoint: ep, ...range, heartbeatTimeout: '3 seconds' });

      // Kill once about a third of the rows are finished.
      for (;;) {
        const u = await stageUsage(db.db, runId, 'gen');
        if (u.succeeded >= N / 3) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      first.removeAllListeners('exit');
      const exited = new Promise((r) => first.once('exit', r));
      const inFlightAtKill = sim.stats().inFlight;
      first.kill('SIGKILL');
      await exited;
      // Let the simulator read what the dead process had sent and Postgres finish its last statement.
      await new Promise((r) => setTimeout(r, 300));
      const atKill = sim.stats();
      const finishedAtKill = (await stageUsage(db.db, runId, 'gen')).succeeded;

      const second = await spawnWorker();
      const result = await handle.result();
      second.removeAllListeners('exit');

      const rows = await loadResults(db.db, runId, 'gen');
      expect(rows).toHaveLength(N);
      expect(new Set(rows.map((r) => r.itemKey)).size).toBe(N);
      expect(rows.every((r) => r.status === 'succeeded')).toBe(true);
      const resent = sim.stats().requests - N;
      console.log(
        `kill -9: ${finishedAtKill} rows written and ${atKill.requests} requests sent when killed (${inFlightAtKill} in flight at the simulator); ` +
          `re-sent after resume: ${resent}; result ${JSON.stringify({ succeeded: result.succeeded, sent: result.sent })}`,
      );
      // Exactly the requests sent but not yet recorded when the worker died are sent again, and a
      // request holds its slot until its row is written: at most one in-flight window.
      expect(resent).toBe(atKill.requests - finishedAtKill);
      expect(inFlightAtKill).toBeLessThanOrEqual(concurrency);
      expect(resent).toBeLessThanOrEqual(concurrency);
      expect(result.succeeded).toBe(N);
      expect(sim.stats().maxInFlight).toBeLessThanOrEqual(concurrency);
    } finally {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      await sim.close();
    }
  });
});
