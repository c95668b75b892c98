/**
 * kill -9 of the worker in the middle of distill's reject/retry loop: a new worker finishes the
 * stage, and its accepted set (trace hashes) equals that of an uninterrupted run with the same
 * seed whose requests all go to the simulator again (endpoint revisions bumped: no cache hits).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchRun } from '../../cli/launch.js';
import type { DbHandle } from '../../db/client.js';
import { runArtifacts } from '../../db/artifacts.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import type { RunningWorker } from '../../worker.js';
import { REPO, startTestWorker, testDatabaseUrl, testTemporalAddress, uniqueName } from '../helpers/env.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { specFromObject } from '../helpers/spec.js';
import { synthTruth } from './helpers.js';

const TQ = uniqueName('distill-kill-a');
const TQ_KILL = uniqueName('distill-kill-b');
let db: DbHandle;
let writerSim: SimHandle;
let sim: SimHandle;
let rescuer: RunningWorker | undefined;
let child: ChildProcess | undefined;
let client: Client;
let stack: TestStack;
let truth: string;

const q = async <T extends Record<string, unknown>>(text: string, params: unknown[] = []) => (await db.pool.query<T>(text, params)).rows;

beforeAll(async () => {
  stack = await startTestStack(TQ, { seed: 4, models: { writer: { behaviour: 'negatives' } } });
  ({ db, client, sim: writerSim } = stack);
  truth = await synthTruth({ db, client, taskQueue: TQ, writerUrl: writerSim.url, name: uniqueName('kill-truth'), seed: 29, limit: 300 });
  sim = await startSimulator({
    seed: 13,
    models: {
      captioner: { behaviour: 'captioner', output_tokens: 40 },
      reasoner: { behaviour: 'reasoner', accuracy: 0.45, hint_following: 0.3, leak_rate: 0.5, truth, output_tokens: 120, latency: { kind: 'fixed', ms: 25 } },
      rewriter: { behaviour: 'rewriter', miss_rate: 0.3, change_rate: 0.1, latency: { kind: 'fixed', ms: 5 } },
    },
  });
}, 600_000);
afterAll(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await rescuer?.shutdown();
  await sim?.close();
  await stack?.close();
});

function spawnWorker(taskQueue: string): Promise<ChildProcess> {
  const proc = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(REPO, 'test', 'helpers', 'worker-child.ts')], {
    env: { ...process.env, DATABASE_URL: testDatabaseUrl(), TEMPORAL_ADDRESS: testTemporalAddress(), TASK_QUEUE: taskQueue },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`worker child exited early (${code})`)));
    proc.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('worker-ready')) resolve(proc);
    });
  });
}

function spec(name: string, revision: string) {
  const ep = (model: string) => ({ base_url: sim.url, model, concurrency: 4, revision });
  return {
    name,
    seed: 29,
    endpoints: { captioner: ep('captioner'), reasoner: ep('reasoner'), rewriter: ep('rewriter') },
    // `images`: the items' image paths resolve against their folder, so the stage captions them.
    datasets: { items: { path: truth, format: 'mc-jsonl', images: dirname(truth) } },
    stages: [
      {
        id: 'distill',
        uses: 'distill',
        with: {
          items: 'items',
          captioner: 'captioner',
          reasoner: 'reasoner',
          hint: true,
          rewrites: [{ name: 'remove-hint', endpoint: 'rewriter' }],
          max_attempts: 4,
          chunk_size: 100,
          parallel: 1,
        },
      },
    ],
  };
}

const acceptedHashes = async (runId: string) =>
  (await q<{ trace_hash: string }>("select trace_hash from distill_attempts where run_id = $1 and status = 'accepted' order by trace_hash", [runId])).map(
    (r) => r.trace_hash,
  );
const outcomes = async (runId: string) =>
  (await q<{ o: string }>("select item_key || '#' || attempt || '#' || status as o from distill_attempts where run_id = $1 order by 1", [runId])).map(
    (r) => r.o,
  );

describe('distill survives kill -9 mid reject/retry loop', () => {
  it('a new worker finishes with exactly the accepted set of an uninterrupted run', async () => {
    const name = uniqueName('distill-kill');
    child = await spawnWorker(TQ_KILL);
    const { runId } = await launchRun({ loaded: await specFromObject(spec(name, 'a')), db: db.db, client, taskQueue: TQ_KILL });
    // Kill while the second attempt's reasoning requests are being answered.
    for (let i = 0; ; i++) {
      const [r] = await q<{ n: number }>(
        `select count(*)::int as n from inference_requests q join inference_results r on r.request_id = q.id
         where q.run_id = $1 and q.stage_id = 'distill' and q.item_key like '%|reason|a1'`,
        [runId],
      );
      if (r!.n >= 20) break;
      if (i > 6000) throw new Error('the second attempt never started');
      await new Promise((res) => setTimeout(res, 50));
    }
    const [before] = await q<{ n: number; retried: number; decided: number }>(
      `select count(*)::int as n, count(*) filter (where attempt > 0)::int as retried,
              count(distinct item_key) filter (where status = 'accepted' or attempt = 3)::int as decided
       from distill_attempts where run_id = $1`,
      [runId],
    );
    child.removeAllListeners('exit');
    const exited = new Promise((res) => child!.once('exit', res));
    child.kill('SIGKILL');
    await exited;
    // Killed inside the loop: items were being retried, and most of the 300 had no final outcome yet.
    expect(before!.retried).toBeGreaterThan(0);
    expect(before!.decided).toBeLessThan(250);
    rescuer = await startTestWorker(TQ_KILL);
    await client.workflow.getHandle(runId).result();

    const sentBefore = sim.stats().requests;
    const straight = await launchRun({ loaded: await specFromObject(spec(name, 'b')), db: db.db, client, taskQueue: TQ });
    await client.workflow.getHandle(straight.runId).result();
    expect(straight.runId).not.toBe(runId);
    // Nothing came from the cache: the uninterrupted run asked the simulator for every row.
    const [rows] = await q<{ n: number; cached: number }>(
      'select count(*)::int as n, count(*) filter (where r.cached)::int as cached from inference_requests q join inference_results r on r.request_id = q.id where q.run_id = $1',
      [straight.runId],
    );
    // (identical prompts within the run share one request)
    expect(rows!.cached).toBeLessThan(rows!.n * 0.05);
    expect(sim.stats().requests - sentBefore).toBe(rows!.n - rows!.cached);

    const killed = await acceptedHashes(runId);
    expect(killed.length).toBeGreaterThan(150);
    expect(killed).toEqual(await acceptedHashes(straight.runId));
    expect(await outcomes(runId)).toEqual(await outcomes(straight.runId));
    const [a] = (await runArtifacts(db.db, runId)).filter((x) => x.kind === 'sft-set');
    const [b] = (await runArtifacts(db.db, straight.runId)).filter((x) => x.kind === 'sft-set');
    expect(a!.contentHash).toBe(b!.contentHash);
    expect(a!.rows).toBe(killed.length);
    // The items had their images: both runs captioned each distinct image once.
    const captions = async (id: string) =>
      (await q<{ n: number }>("select count(*)::int as n from inference_requests where run_id = $1 and item_key like 'caption|%'", [id]))[0]!.n;
    expect(await captions(runId)).toBeGreaterThan(20);
    expect(await captions(straight.runId)).toBe(await captions(runId));
  });
});
