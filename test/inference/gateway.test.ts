/**
 * The inference activities against a real Postgres and the simulator over real HTTP, with the
 * real `openai` client; activities run in Temporal's MockActivityEnvironment (no server needed).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { openDb, type DbHandle } from '../../db/client.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import { freePort } from '../../runtime/net.js';
import { canonicalJson, cacheKey, endpointFingerprint, loadResults, sha256Hex, stageUsage, storeImage } from '../../activities/inference/index.js';
import { classifyInferenceError, InferenceItemError, InferenceTransientError, EndpointFatalError } from '../../activities/inference/errors.js';
import { APIError } from 'openai';
import { CallGroup, storableText } from '../../activities/inference/gateway.js';
import { Semaphore } from '../../activities/inference/limits.js';
import { activitiesFor, activityEnv, batchRows, endpoint, prepareBatch, requireEnv, uniqueId } from './helpers.js';
import type { CheckEndpointsOutput, ExecuteRequestsInput, ExecuteRequestsOutput } from '../../activities/inference/types.js';

let db: DbHandle;
let sim: SimHandle;
let authSim: SimHandle;

beforeAll(async () => {
  db = openDb(requireEnv('JF_TEST_DATABASE_URL'));
  sim = await startSimulator({ seed: 1, latency: { kind: 'fixed', ms: 2 }, models: { policy: { behaviour: 'policy' }, judge: { behaviour: 'judge' } } });
  authSim = await startSimulator({ api_key: 'sk-right', latency: { kind: 'fixed', ms: 2 }, models: { policy: { behaviour: 'policy' } } });
});
afterAll(async () => {
  await sim?.close();
  await authSim?.close();
  await db?.close();
});

async function expectFailure(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

describe('pure parts', () => {
  it('canonical JSON sorts keys and drops undefined, so equal requests share a cache key', () => {
    expect(canonicalJson({ b: 1, a: { d: undefined, c: [2, { z: 1, y: 2 }] } })).toBe('{"a":{"c":[2,{"y":2,"z":1}]},"b":1}');
    const fp = endpointFingerprint({ base_url: 'http://h/v1/', model: 'm', revision: '' });
    expect(fp).toBe(endpointFingerprint({ base_url: 'http://h/v1', model: 'm', revision: '' }));
    expect(fp).not.toBe(endpointFingerprint({ base_url: 'http://h/v1', model: 'm', revision: 'r2' }));
    const req = { messages: [{ role: 'user' as const, content: 'hi' }], params: { temperature: 0, max_tokens: 5 } };
    const same = { params: { max_tokens: 5, temperature: 0, top_p: undefined }, messages: [{ content: 'hi', role: 'user' as const }] };
    expect(cacheKey(fp, req, 0)).toBe(cacheKey(fp, same, 0));
    expect(cacheKey(fp, req, 0)).not.toBe(cacheKey(fp, req, 1));
    // The key is its definition (sha256 of the canonical JSON), whichever way it is computed.
    for (const sample of [0, 1, 12]) {
      expect(cacheKey(fp, same, sample)).toBe(sha256Hex(canonicalJson({ sample, params: req.params, endpoint: fp, messages: req.messages })));
    }
  });

  it('the in-flight semaphore is FIFO, skips aborted waiters and follows limit changes', async () => {
    const sem = new Semaphore(1);
    const order: string[] = [];
    await sem.acquire();
    const aborted = new AbortController();
    const a = sem.acquire().then(() => order.push('a'));
    const b = sem.acquire(aborted.signal).then(
      () => order.push('b'),
      (e: Error) => order.push(`b:${e.name}`),
    );
    const c = sem.acquire().then(() => order.push('c'));
    aborted.abort();
    await b;
    sem.release();
    await a;
    // The aborted waiter no longer counts: only c waits.
    expect([sem.inFlight, sem.waiting]).toEqual([1, 1]);
    sem.setLimit(2);
    await c;
    expect(order).toEqual(['b:InferenceAbortedError', 'a', 'c']);
    expect([sem.inFlight, sem.waiting]).toEqual([2, 0]);
  });

  it('the semaphore serves the lowest priority first, FIFO among equals', async () => {
    const sem = new Semaphore(1);
    await sem.acquire();
    const order: string[] = [];
    const waits = [
      ['x', 50],
      ['y', 7],
      ['z', 50],
      ['w', 3],
      ['v', 7],
    ].map(([name, prio]) => sem.acquire(undefined, prio as number).then(() => order.push(name as string)));
    for (let i = 0; i < waits.length; i++) {
      sem.release();
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(waits);
    expect(order).toEqual(['w', 'y', 'v', 'x', 'z']);
    expect([sem.inFlight, sem.waiting]).toEqual([1, 0]);
  });

  it('text Postgres cannot hold (NUL, lone surrogates) becomes U+FFFD', () => {
    expect(storableText('a\u0000b\uD800c\uDC00d\uD83D\uDE00')).toBe('a\uFFFDb\uFFFDc\uFFFDd\uD83D\uDE00');
    expect(storableText('plain')).toBe('plain');
  });

  it('maps HTTP errors once: item, transient (with retry-after), endpoint-fatal', () => {
    const ep = { name: 'judge', baseUrl: 'http://h/v1', model: 'm', apiKeyEnv: 'KEY' };
    const h = (o: Record<string, string>) => new Headers(o);
    const gen = (status: number, body: object, headers: Record<string, string> = {}) => APIError.generate(status, { error: body }, undefined, h(headers));
    expect(classifyInferenceError(gen(400, { message: 'bad' }), ep)).toBeInstanceOf(InferenceItemError);
    const ctx = classifyInferenceError(gen(400, { message: "This model's maximum context length is 10 tokens" }), ep) as InferenceItemError;
    expect(ctx.kind).toBe('context_length');
    const rl = classifyInferenceError(gen(429, { message: 'slow down' }, { 'retry-after': '2' }), ep) as InferenceTransientError;
    expect([rl.kind, rl.retryAfterMs]).toEqual(['rate_limited', 2000]);
    expect((classifyInferenceError(gen(429, {}, { 'retry-after-ms': '250', 'retry-after': '9' }), ep) as InferenceTransientError).retryAfterMs).toBe(250);
    expect((classifyInferenceError(gen(503, {}), ep) as InferenceTransientError).kind).toBe('server_error');
    const auth = classifyInferenceError(gen(401, {}), ep) as EndpointFatalError;
    expect(auth.type).toBe('EndpointAuthError');
    expect(auth.message).toContain('check the env var KEY');
    expect((classifyInferenceError(gen(404, { message: 'The model `m` does not exist.', code: 'model_not_found' }), ep) as EndpointFatalError).type).toBe(
      'EndpointModelNotFoundError',
    );
    expect((classifyInferenceError(gen(404, { message: 'no such route' }), ep) as InferenceItemError).kind).toBe('not_found');
    expect((classifyInferenceError(new SyntaxError('Unexpected end of JSON input'), ep) as InferenceTransientError).kind).toBe('malformed_response');
    const bug = new RangeError('a bug');
    expect(() => classifyInferenceError(bug, ep)).toThrow(bug);
  });
});

describe('checkEndpoints', () => {
  it('lists the served models', async () => {
    const { activities } = activitiesFor(db.db);
    const out: CheckEndpointsOutput = await activityEnv().env.run(activities.checkEndpoints, { endpoints: { judge: endpoint(sim.url, { model: 'judge' }) } });
    expect(out.ok).toBe(true);
    expect(out.models.judge).toEqual(expect.arrayContaining(['judge', 'policy']));
  });

  it('a rejected key fails at once, naming the endpoint, URL and env var (never the key)', async () => {
    const { activities } = activitiesFor(db.db, { env: { JF_KEY: 'sk-wrong' } });
    const err = await expectFailure(
      activityEnv().env.run(activities.checkEndpoints, { endpoints: { judge: endpoint(authSim.url, { api_key_env: 'JF_KEY' }) } }),
    );
    expect(err.nonRetryable).toBe(true);
    expect(err.type).toBe('EndpointAuthError');
    expect(err.message).toBe(`endpoint "judge" (${authSim.url}): the API key was rejected (401); check the env var JF_KEY`);
    expect(err.message).not.toContain('sk-wrong');
  });

  it('a missing key env var fails naming the variable', async () => {
    const { activities } = activitiesFor(db.db, { env: {} });
    const err = await expectFailure(
      activityEnv().env.run(activities.checkEndpoints, { endpoints: { judge: endpoint(authSim.url, { api_key_env: 'JF_NOT_SET' }) } }),
    );
    expect([err.type, err.nonRetryable]).toEqual(['EndpointConfigError', true]);
    expect(err.message).toContain('JF_NOT_SET');
  });

  it('a model not served fails listing what is served', async () => {
    const { activities } = activitiesFor(db.db);
    const err = await expectFailure(activityEnv().env.run(activities.checkEndpoints, { endpoints: { judge: endpoint(sim.url, { model: 'foo' }) } }));
    expect([err.type, err.nonRetryable]).toEqual(['EndpointModelNotFoundError', true]);
    expect(err.message).toBe(`endpoint "judge": model "foo" is not served at ${sim.url} (served: policy, judge)`);
  });

  it('nothing listening fails after a few quick tries', async () => {
    const url = `http://127.0.0.1:${await freePort()}/v1`;
    const { activities } = activitiesFor(db.db);
    const t0 = Date.now();
    const err = await expectFailure(activityEnv().env.run(activities.checkEndpoints, { endpoints: { judge: endpoint(url) } }));
    expect(Date.now() - t0).toBeLessThan(5000);
    expect([err.type, err.nonRetryable]).toEqual(['EndpointUnreachableError', true]);
    expect(err.message).toBe(`endpoint "judge": nothing answers at ${url} (ECONNREFUSED)`);
  });
});

describe('executeRequests', () => {
  function input(runId: string, stageId: string, ep: ReturnType<typeof endpoint>, range: { fromId: number; toId: number }): ExecuteRequestsInput {
    return { runId, stageId, endpointName: 'ep', endpoint: ep, fromId: range.fromId, toId: range.toId };
  }

  it('a 400 on one item fails that item only, with its reason and no retry', async () => {
    const runId = uniqueId('bad-item');
    const ep = endpoint(sim.url, { concurrency: 8 });
    const rows = batchRows(runId, 's', 50, { text: (i) => (i === 17 ? 'please SIM_BAD_REQUEST here' : `q ${i}`) });
    const range = await prepareBatch(db.db, rows, ep);
    const { activities } = activitiesFor(db.db);
    const out: ExecuteRequestsOutput = await activityEnv().env.run(activities.executeRequests, input(runId, 's', ep, range));
    expect(out).toMatchObject({ succeeded: 49, failed: 1, cached: 0, sent: 50 });
    const results = await loadResults(db.db, runId, 's');
    const bad = results.filter((r) => r.status === 'failed');
    expect(bad).toHaveLength(1);
    expect(bad[0]).toMatchObject({ itemKey: 'item-17', errorClass: 'item:bad_request', attempts: 1, content: null });
    expect(bad[0]!.error).toContain('HTTP 400: the request contains SIM_BAD_REQUEST');
    expect(results.filter((r) => r.status === 'succeeded' && r.content && r.content.length > 0)).toHaveLength(49);
  });

  it('the same requests again (new stage) are served from the cache: 0 HTTP requests, identical outputs', async () => {
    const runId = uniqueId('cache');
    const ep = endpoint(sim.url, { concurrency: 16 });
    const first = await prepareBatch(db.db, batchRows(runId, 'first', 300, { text: (i) => `cached question ${runId} ${i}` }), ep);
    const { activities } = activitiesFor(db.db);
    const a = await activityEnv().env.run(activities.executeRequests, input(runId, 'first', ep, first));
    expect(a).toMatchObject({ succeeded: 300, cached: 0, sent: 300 });

    const second = await prepareBatch(db.db, batchRows(runId, 'second', 300, { text: (i) => `cached question ${runId} ${i}` }), ep);
    const before = sim.stats().requests;
    const b = await activityEnv().env.run(activities.executeRequests, input(runId, 'second', ep, second));
    expect(sim.stats().requests - before).toBe(0);
    expect(b).toMatchObject({ succeeded: 300, cached: 300, sent: 0, promptTokens: 0, completionTokens: 0 });
    const out1 = (await loadResults(db.db, runId, 'first')).map((r) => [r.itemKey, r.content, r.finishReason]);
    const out2 = (await loadResults(db.db, runId, 'second')).map((r) => [r.itemKey, r.content, r.finishReason]);
    expect(out2).toEqual(out1);
    const usage = await stageUsage(db.db, runId, 'second', { input_per_mtok: 1, output_per_mtok: 2 });
    expect(usage).toMatchObject({ requests: 300, succeeded: 300, cached: 300, costUsd: 0 });
    const paid = await stageUsage(db.db, runId, 'first', { input_per_mtok: 1, output_per_mtok: 2 });
    expect(paid.costUsd).toBeCloseTo((paid.promptTokens * 1 + paid.completionTokens * 2) / 1e6, 12);
    expect(paid.completionTokens).toBeGreaterThan(0);
  });

  it('identical requests in flight at once are sent once', async () => {
    const runId = uniqueId('dedupe');
    const ep = endpoint(sim.url, { concurrency: 16 });
    // 40 rows, 4 distinct requests (same text and sample index under different item keys).
    const range = await prepareBatch(db.db, batchRows(runId, 's', 40, { text: (i) => `dup ${runId} ${i % 4}` }), ep);
    const before = sim.stats().requests;
    const { activities } = activitiesFor(db.db);
    const out: ExecuteRequestsOutput = await activityEnv().env.run(activities.executeRequests, input(runId, 's', ep, range));
    expect(sim.stats().requests - before).toBe(4);
    expect(out).toMatchObject({ succeeded: 40, sent: 4, cached: 36 });
  });

  it('an identical request shared by two activities survives one of them being cancelled', async () => {
    const slow = await startSimulator({ latency: { kind: 'fixed', ms: 300 }, models: { policy: { behaviour: 'policy' } } });
    try {
      const { gateway } = activitiesFor(db.db);
      const ep = endpoint(slow.url);
      const call = { endpointName: 'ep', endpoint: ep, key: 'k-shared', request: batchRows('x', 's', 1)[0]!.request, sampleIndex: 0, images: new Map() };
      const a = new CallGroup();
      const b = new CallGroup();
      const first = gateway.complete(call, a);
      const second = gateway.complete(call, b);
      a.abort();
      await expect(first).rejects.toThrow('aborted');
      const r = await second;
      expect(r).toMatchObject({ ok: true, shared: true, sent: 0 });
      expect(slow.stats().requests).toBe(1);
      // Both cancelled: the request itself is aborted, and a later caller sends afresh.
      const c = new CallGroup();
      const third = gateway.complete({ ...call, key: 'k-alone' }, c);
      await new Promise((r) => setTimeout(r, 50));
      c.abort();
      await expect(third).rejects.toThrow('aborted');
      await new Promise((r) => setTimeout(r, 50));
      expect(slow.stats()).toMatchObject({ requests: 2, aborted: 1 });
      const again = await gateway.complete({ ...call, key: 'k-alone' }, new CallGroup());
      expect(again).toMatchObject({ ok: true, shared: false, sent: 1 });
    } finally {
      await slow.close();
    }
  });

  it('refuses n > 1 and stream before writing anything', async () => {
    const runId = uniqueId('refuse');
    const ep = endpoint(sim.url);
    await expect(prepareBatch(db.db, batchRows(runId, 's', 3, { params: { n: 2 } }), ep)).rejects.toThrow(
      /asks for n=2; draw several samples as rows with distinct sampleIndex/,
    );
    await expect(prepareBatch(db.db, batchRows(runId, 's', 3, { params: { stream: true } }), ep)).rejects.toThrow(/asks for stream=true; .*drop stream/);
    expect((await stageUsage(db.db, runId, 's')).requests).toBe(0);
  });

  it('a seed varies per sample (seed + sampleIndex) and reproduces', async () => {
    const runId = uniqueId('seed');
    const ep = endpoint(sim.url, { concurrency: 4 });
    const rows = [0, 1, 2].map((s) => ({
      ...batchRows(runId, 's', 1, { params: { temperature: 1, seed: 11, max_tokens: 64 } })[0]!,
      itemKey: `x#${s}`,
      sampleIndex: s,
    }));
    const range = await prepareBatch(db.db, rows, ep);
    const { activities } = activitiesFor(db.db);
    await activityEnv().env.run(activities.executeRequests, input(runId, 's', ep, range));
    const contents = (await loadResults(db.db, runId, 's')).map((r) => r.content);
    expect(new Set(contents).size).toBe(3);
  });

  it('images travel as blob hashes and are sent as data URLs', async () => {
    const runId = uniqueId('img');
    const ep = endpoint(sim.url, { concurrency: 4, model: 'judge' });
    const png = Buffer.from('89504e470d0a1a0a' + 'ab'.repeat(3000), 'hex');
    const hash = await storeImage(db.db, png, 'image/png');
    expect(await storeImage(db.db, png, 'image/png')).toBe(hash);
    const rows = [0, 1].map((i) => ({
      runId,
      stageId: 's',
      itemKey: `img-${i}`,
      endpoint: 'ep',
      sampleIndex: 0,
      request: {
        messages: [
          {
            role: 'user' as const,
            content: [
              { type: 'text' as const, text: `what is shown ${runId} ${i}?` },
              { type: 'image_ref' as const, hash, mime: 'image/png' },
            ],
          },
        ],
        params: { temperature: 0, max_tokens: 32 },
      },
    }));
    const range = await prepareBatch(db.db, rows, ep);
    const stored = await db.pool.query<{ body: unknown }>(
      'select b.body from inference_requests q join request_bodies b on b.hash = q.body_hash where q.run_id = $1',
      [runId],
    );
    expect(stored.rows).toHaveLength(2);
    expect(JSON.stringify(stored.rows)).toContain('"type":"image_ref"');
    expect(JSON.stringify(stored.rows)).not.toContain('base64');
    const before = sim.stats();
    const { activities } = activitiesFor(db.db);
    const out: ExecuteRequestsOutput = await activityEnv().env.run(activities.executeRequests, input(runId, 's', ep, range));
    expect(out.succeeded).toBe(2);
    const after = sim.stats();
    expect(after.images - before.images).toBe(2);
    expect(after.imageBytes - before.imageBytes).toBe(2 * png.length);
  });

  it('resumes after the heartbeat cursor and heartbeats its progress', async () => {
    const runId = uniqueId('cursor');
    const ep = endpoint(sim.url, { concurrency: 8 });
    const range = await prepareBatch(db.db, batchRows(runId, 's', 100), ep);
    const { activities } = activitiesFor(db.db);
    // Pretend an earlier attempt finished the first 40 rows (its heartbeat said so).
    const cursor = range.fromId + 39;
    const { env, heartbeats } = activityEnv({ cursor });
    const out: ExecuteRequestsOutput = await env.run(activities.executeRequests, input(runId, 's', ep, range));
    expect(out.sent).toBe(60);
    const results = await loadResults(db.db, runId, 's');
    expect(results.filter((r) => r.status === 'pending').map((r) => r.id)).toEqual(results.slice(0, 40).map((r) => r.id));
    expect(heartbeats.at(-1)).toEqual({ cursor: range.toId });
  });

  it('an rpm limit spaces requests out', async () => {
    const runId = uniqueId('rpm');
    // 120/min = 2/s with a burst of 10 s worth (20): 26 requests need >= 3 s.
    const ep = endpoint(sim.url, { concurrency: 8, rpm: 120 });
    const range = await prepareBatch(db.db, batchRows(runId, 's', 26), ep);
    const { activities } = activitiesFor(db.db);
    const t0 = Date.now();
    const out: ExecuteRequestsOutput = await activityEnv().env.run(activities.executeRequests, input(runId, 's', ep, range));
    expect(out.succeeded).toBe(26);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2900);
  });

  it('a rejected key or unknown model mid-batch stops the activity at once', async () => {
    const runId = uniqueId('fatal');
    const concurrency = 8;
    const authEp = endpoint(authSim.url, { concurrency, api_key_env: 'JF_KEY' });
    const range = await prepareBatch(db.db, batchRows(runId, 'auth', 2000), authEp);
    const { activities } = activitiesFor(db.db, { env: { JF_KEY: 'sk-wrong' } });
    const before = authSim.stats().requests;
    const t0 = Date.now();
    const err = await expectFailure(activityEnv().env.run(activities.executeRequests, input(runId, 'auth', authEp, range)));
    expect(Date.now() - t0).toBeLessThan(3000);
    expect([err.type, err.nonRetryable]).toEqual(['EndpointAuthError', true]);
    expect(err.message).toContain('check the env var JF_KEY');
    expect(authSim.stats().requests - before).toBeLessThanOrEqual(concurrency);
    expect((await stageUsage(db.db, runId, 'auth')).pending).toBe(2000);

    const modelEp = endpoint(sim.url, { concurrency, model: 'nope' });
    const range2 = await prepareBatch(db.db, batchRows(runId, 'model', 2000), modelEp);
    const err3 = await expectFailure(activityEnv().env.run(activitiesFor(db.db).activities.executeRequests, input(runId, 'model', modelEp, range2)));
    expect([err3.type, err3.nonRetryable]).toEqual(['EndpointModelNotFoundError', true]);
    expect(err3.message).toMatch(new RegExp(`^endpoint "ep": model "nope" is not served at ${sim.url.replace(/[.]/g, '\\.')}`));
  });
});
