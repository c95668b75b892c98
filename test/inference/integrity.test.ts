/**
 * What `executeRequests` guarantees about outcomes, against a real Postgres and the simulator over
 * HTTP: an endpoint that stops answering stops the activity (EndpointDownError) without burning
 * its requests as failed; a succeeded result without its output is refused; a fresh activity sends
 * failed rows again while a resumed attempt and succeeded rows are left alone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { openDb, type DbHandle } from '../../db/client.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import { freePort } from '../../runtime/net.js';
import { loadResults, stageUsage } from '../../activities/inference/index.js';
import type { ExecuteRequestsInput } from '../../activities/inference/types.js';
import { activitiesFor, activityEnv, batchRows, endpoint, prepareBatch, requireEnv, uniqueId } from './helpers.js';

let db: DbHandle;
let sim: SimHandle;

beforeAll(async () => {
  db = openDb(requireEnv('JF_TEST_DATABASE_URL'));
  sim = await startSimulator({ seed: 5, latency: { kind: 'fixed', ms: 2 }, models: { policy: { behaviour: 'policy' } } });
});
afterAll(async () => {
  await sim?.close();
  await db?.close();
});

function input(runId: string, ep: ReturnType<typeof endpoint>, range: { fromId: number; toId: number }): ExecuteRequestsInput {
  return { runId, stageId: 's', endpointName: 'ep', endpoint: ep, fromId: range.fromId, toId: range.toId };
}

async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

describe('executeRequests outcomes', () => {
  it('an endpoint where nothing answers: EndpointDownError after down_after_s naming it and its URL; no request recorded as failed', async () => {
    const url = `http://127.0.0.1:${await freePort()}/v1`;
    const runId = uniqueId('dead');
    // Two attempts an item would normally fail it within 0.1 s; silence keeps it trying until the endpoint is declared down.
    const ep = endpoint(url, { concurrency: 4, max_attempts: 2, down_after_s: 1.5 });
    const range = await prepareBatch(db.db, batchRows(runId, 's', 20), ep);
    const { activities } = activitiesFor(db.db, { backoff: { baseMs: 50, maxMs: 200 } });
    const started = Date.now();
    const err = await failureOf(activityEnv().env.run(activities.executeRequests, input(runId, ep, range)));
    expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
    expect(err.type).toBe('EndpointDownError');
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toMatch(
      new RegExp(`^endpoint "ep": nothing answers at ${url.replace(/\./g, '\\.')} for \\d+ s \\(connection error \\(ECONNREFUSED\\); down_after_s 1\\.5\\)`),
    );
    expect(await stageUsage(db.db, runId, 's')).toMatchObject({ requests: 20, succeeded: 0, failed: 0, pending: 20 });
  });

  it('a succeeded result whose output is missing fails the activity loudly (InferenceIntegrityError)', async () => {
    const runId = uniqueId('lost');
    const ep = endpoint(sim.url, { concurrency: 4 });
    const range = await prepareBatch(db.db, batchRows(runId, 's', 10, { text: (i) => `lost ${runId} ${i}` }), ep);
    // What the outage used to leave behind: a cached success with no cache entry.
    await db.pool.query(`insert into inference_results (request_id, status, attempts, cached) values ($1, 'succeeded', 0, true)`, [range.fromId + 3]);
    const { activities } = activitiesFor(db.db);
    const err = await failureOf(activityEnv().env.run(activities.executeRequests, input(runId, ep, range)));
    expect(err.type).toBe('InferenceIntegrityError');
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toBe(
      `stage "s": 1 succeeded request(s) of ids ${range.fromId}-${range.toId} have no output in inference_cache (first ids: ${range.fromId + 3}); their results were written without their outputs`,
    );
  });

  it('a fresh activity sends the failed rows again and replaces their outcome; a resumed attempt and succeeded rows are left alone', async () => {
    const runId = uniqueId('resend');
    const ep = endpoint(sim.url, { concurrency: 8 });
    const rows = batchRows(runId, 's', 30, { text: (i) => (i === 4 || i === 21 ? `SIM_BAD_REQUEST ${runId} ${i}` : `resend ${runId} ${i}`) });
    const range = await prepareBatch(db.db, rows, ep);
    const { activities } = activitiesFor(db.db);
    sim.reset();
    expect(await activityEnv().env.run(activities.executeRequests, input(runId, ep, range))).toMatchObject({ succeeded: 28, failed: 2, sent: 30 });
    expect(sim.stats().requests).toBe(30);
    const before = await loadResults(db.db, runId, 's');

    // A retried attempt resuming from its cursor keeps the outcomes it finds.
    const resumed = await activityEnv({ cursor: range.fromId - 1 }).env.run(activities.executeRequests, input(runId, ep, range));
    expect(resumed).toMatchObject({ succeeded: 28, failed: 2, sent: 0 });
    expect(sim.stats().requests).toBe(30);

    // A fresh activity (a resumed stage) sends exactly the two failed rows again.
    const again = await activityEnv().env.run(activities.executeRequests, input(runId, ep, range));
    expect(again).toMatchObject({ succeeded: 28, failed: 2, sent: 2 });
    expect(sim.stats().requests).toBe(32);
    const after = await loadResults(db.db, runId, 's');
    expect(after.filter((r) => r.status === 'succeeded')).toEqual(before.filter((r) => r.status === 'succeeded'));
    expect(after.filter((r) => r.status === 'failed').map((r) => [r.itemKey, r.errorClass])).toEqual([
      ['item-4', 'item:bad_request'],
      ['item-21', 'item:bad_request'],
    ]);

    // A failure is replaced by a later success: here a row marked failed whose output the cache holds.
    await db.pool.query(`update inference_results set status = 'failed', error_class = 'transient:connection' where request_id = $1`, [range.fromId + 7]);
    const healed = await activityEnv().env.run(activities.executeRequests, input(runId, ep, range));
    expect(healed).toMatchObject({ succeeded: 28, failed: 2, sent: 2, cached: 1 });
    const row = (await loadResults(db.db, runId, 's')).find((r) => r.id === range.fromId + 7)!;
    expect(row).toMatchObject({ status: 'succeeded', errorClass: null, cached: true });
    expect(row.content).toBe(before.find((r) => r.id === range.fromId + 7)!.content);
  });
});
