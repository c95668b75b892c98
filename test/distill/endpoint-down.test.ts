/**
 * The reasoner going away in the middle of distill's per-item loop: the stage stops with the
 * endpoint named once `down_after_s` of silence has passed, instead of burning the items' attempts
 * as `request_failed`; what was answered stays recorded, and a launch under another label once the
 * endpoint is back sends only what is not known yet and ends with the accepted set of a run that
 * never saw the outage.
 */
import { dirname } from 'node:path';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchRun } from '../../cli/launch.js';
import type { DbHandle } from '../../db/client.js';
import { freePort } from '../../runtime/net.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { uniqueName } from '../helpers/env.js';
import { specFromObject } from '../helpers/spec.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { synthTruth } from './helpers.js';

const TQ = uniqueName('distill-down');
let db: DbHandle;
let client: Client;
let stack: TestStack;
let truth: string;
let reasonerPort: number;
let captioner: SimHandle;
let reasoner: SimHandle | undefined;

const q = async <T extends Record<string, unknown>>(text: string, params: unknown[] = []) => (await db.pool.query<T>(text, params)).rows;

const reasonerSim = (accuracy = 0.5) =>
  startSimulator(
    {
      seed: 31,
      models: { reasoner: { behaviour: 'reasoner', accuracy, truth, output_tokens: 60, latency: { kind: 'fixed', ms: 20 } } },
    },
    { port: reasonerPort },
  );

beforeAll(async () => {
  stack = await startTestStack(TQ, { seed: 6, models: { writer: { behaviour: 'negatives' } } });
  ({ db, client } = stack);
  truth = await synthTruth({ db, client, taskQueue: TQ, writerUrl: stack.sim.url, name: uniqueName('down-truth'), seed: 37, limit: 200 });
  captioner = await startSimulator({ seed: 3, models: { captioner: { behaviour: 'captioner', output_tokens: 20 } } });
  reasonerPort = await freePort();
}, 600_000);
afterAll(async () => {
  await reasoner?.close();
  await captioner?.close();
  await stack?.close();
});

function spec(name: string, revision: string) {
  return {
    name,
    seed: 41,
    endpoints: {
      captioner: { base_url: captioner.url, model: 'captioner', concurrency: 8 },
      reasoner: { base_url: `http://127.0.0.1:${reasonerPort}/v1`, model: 'reasoner', concurrency: 4, revision, down_after_s: 2 },
    },
    datasets: { items: { path: truth, format: 'mc-jsonl', images: dirname(truth) } },
    stages: [
      { id: 'distill', uses: 'distill', with: { items: 'items', captioner: 'captioner', reasoner: 'reasoner', hint: false, max_attempts: 3, chunk_size: 50 } },
    ],
  };
}

const acceptedHashes = async (runId: string) =>
  (await q<{ h: string }>("select trace_hash as h from distill_attempts where run_id = $1 and status = 'accepted' order by 1", [runId])).map((r) => r.h);

describe('distill: the reasoner goes away mid-loop', () => {
  it('the stage stops naming the endpoint, nothing is burnt as request_failed, and a relaunch finishes with the accepted set of an undisturbed run', async () => {
    reasoner = await reasonerSim();
    const name = uniqueName('distill-down');
    const { runId } = await launchRun({ loaded: await specFromObject(spec(name, 'a')), db: db.db, client, taskQueue: TQ });
    for (let i = 0; ; i++) {
      const [r] = await q<{ n: number }>(
        `select count(*)::int as n from inference_requests q join inference_results r on r.request_id = q.id
         where q.run_id = $1 and q.item_key like '%|reason|%'`,
        [runId],
      );
      if (r!.n >= 40) break;
      if (i > 6000) throw new Error('the reasoning requests never started');
      await new Promise((res) => setTimeout(res, 20));
    }
    await reasoner.close();
    reasoner = undefined;
    const err = await client.workflow
      .getHandle(runId)
      .result()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const [stage] = await q<{ status: string; error: string }>("select status, error from stages where run_id = $1 and stage_id = 'distill'", [runId]);
    expect(stage!.status).toBe('failed');
    expect(stage!.error).toMatch(/endpoint "reasoner": nothing answers at http:\/\/127\.0\.0\.1:\d+\/v1/);
    // Silence is not an item's failure: no reasoning request failed, no attempt rejected for it.
    const [burnt] = await q<{ failed: number; rejected: number; answered: number }>(
      `select (select count(*)::int from inference_requests q join inference_results r on r.request_id = q.id
               where q.run_id = $1 and q.item_key like '%|reason|%' and r.status = 'failed') as failed,
              (select count(*)::int from distill_attempts where run_id = $1 and status = 'request_failed') as rejected,
              (select count(*)::int from inference_requests q join inference_results r on r.request_id = q.id
               where q.run_id = $1 and q.item_key like '%|reason|%' and r.status = 'succeeded') as answered`,
      [runId],
    );
    expect(burnt).toEqual({ failed: 0, rejected: 0, answered: expect.any(Number) as number });
    expect(burnt!.answered).toBeGreaterThanOrEqual(40);

    // Back up: a launch under another label answers what is known from the cache and sends the rest.
    reasoner = await reasonerSim();
    const again = await launchRun({ loaded: await specFromObject(spec(name, 'a')), label: 'after', db: db.db, client, taskQueue: TQ });
    await client.workflow.getHandle(again.runId).result();
    const [cached] = await q<{ n: number }>(
      `select count(*)::int as n from inference_requests q join inference_results r on r.request_id = q.id
       where q.run_id = $1 and q.item_key like '%|reason|%' and r.cached`,
      [again.runId],
    );
    expect(cached!.n).toBeGreaterThanOrEqual(burnt!.answered);
    expect(reasoner.stats().requests).toBeLessThanOrEqual(
      (await q<{ n: number }>("select count(*)::int as n from inference_requests where run_id = $1 and item_key like '%|reason|%'", [again.runId]))[0]!.n -
        burnt!.answered,
    );

    // The same accepted set as a run that never lost its reasoner (new revision: nothing cached).
    const straight = await launchRun({ loaded: await specFromObject(spec(name, 'b')), db: db.db, client, taskQueue: TQ });
    await client.workflow.getHandle(straight.runId).result();
    const hashes = await acceptedHashes(again.runId);
    expect(hashes.length).toBeGreaterThan(100);
    expect(hashes).toEqual(await acceptedHashes(straight.runId));
  });
});
