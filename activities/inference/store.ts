/**
 * Postgres side of the gateway: preparing request rows, images, the content-addressed cache, batched
 * result writes and usage queries. Hot paths are single statements over `unnest`ed arrays: one round
 * trip per batch whatever its size.
 */
import type { Db } from '../../db/client.js';
import type { EndpointSpec } from '../../spec/endpoint.js';
import { cacheKeyOfSample, cacheKeyPrefix, canonicalBody, endpointFingerprint, requestBodyHash, sha256Hex } from './cache-key.js';
import type { CompletionResult, InferenceOutput } from './gateway.js';
import type { PrepareRequestRow, PreparedRequest } from './types.js';

const INSERT_BATCH = 2000;

/**
 * Inserts request rows (idempotent: an existing (run, stage, item_key) row is kept as is) and
 * computes each row's cache key. `endpoints` maps the rows' endpoint names to their specs (the key
 * holds the endpoint's fingerprint: base URL, served model, revision).
 */
export async function prepareRequests(
  db: Db,
  rows: readonly PrepareRequestRow[],
  endpoints: Readonly<Record<string, EndpointSpec>>,
  opts: { ids?: boolean } = {},
): Promise<{ inserted: number; ids: Map<string, { id: number; cacheKey: string }> }> {
  const fingerprints = new Map<string, string>();
  for (const name of new Set(rows.map((r) => r.endpoint))) {
    const spec = endpoints[name];
    if (!spec) throw new Error(`prepareRequests: no endpoint named "${name}" (known: ${Object.keys(endpoints).join(', ') || 'none'})`);
    fingerprints.set(name, endpointFingerprint(spec));
  }
  for (const r of rows) {
    const n = r.request.params.n;
    if (n !== undefined && n !== 1) {
      throw new Error(`prepareRequests: item "${r.itemKey}" asks for n=${String(n)}; draw several samples as rows with distinct sampleIndex instead`);
    }
    if (r.request.params.stream !== undefined && r.request.params.stream !== false) {
      throw new Error(
        `prepareRequests: item "${r.itemKey}" asks for stream=${String(r.request.params.stream)}; the gateway stores whole completions, drop stream`,
      );
    }
  }
  // Rows sharing one request object (the samples of a prompt) share its body and serialization.
  const bodies = new Map<PreparedRequest, { hash: string; json: string; prefixes: Map<string, string> }>();
  const bodyOf = (request: PreparedRequest) => {
    let b = bodies.get(request);
    if (!b) {
      const json = canonicalBody(request);
      b = { hash: requestBodyHash(json), json, prefixes: new Map() };
      bodies.set(request, b);
    }
    return b;
  };
  const keyOf = (r: PrepareRequestRow) => {
    const b = bodyOf(r.request);
    const fp = fingerprints.get(r.endpoint)!;
    let prefix = b.prefixes.get(fp);
    if (prefix === undefined) {
      prefix = cacheKeyPrefix(fp, b.json);
      b.prefixes.set(fp, prefix);
    }
    return cacheKeyOfSample(prefix, r.sampleIndex);
  };
  let inserted = 0;
  // With `ids`: every row's id and cache key by item key (one query more only for rows that existed).
  const ids = new Map<string, { id: number; cacheKey: string }>();
  for (let i = 0; i < rows.length; i += INSERT_BATCH) {
    const batch = rows.slice(i, i + INSERT_BATCH);
    const keys = batch.map(keyOf);
    const distinct = new Map<string, string>();
    for (const r of batch) {
      const b = bodyOf(r.request);
      distinct.set(b.hash, b.json);
    }
    // Bodies first (the rows reference them); an orphan body left by a crash in between is harmless.
    await db.$client.query(`insert into request_bodies (hash, body) select * from unnest($1::text[], $2::jsonb[]) on conflict (hash) do nothing`, [
      [...distinct.keys()],
      [...distinct.values()],
    ]);
    const res = await db.$client.query(
      `insert into inference_requests (run_id, stage_id, item_key, endpoint, sample_index, body_hash, cache_key)
       select run_id, stage_id, item_key, endpoint, sample_index, body_hash, cache_key
       from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[])
         with ordinality as t(run_id, stage_id, item_key, endpoint, sample_index, body_hash, cache_key, ord)
       order by ord
       on conflict (run_id, stage_id, item_key) do nothing
       returning id, item_key, cache_key`,
      [
        batch.map((r) => r.runId),
        batch.map((r) => r.stageId),
        batch.map((r) => r.itemKey),
        batch.map((r) => r.endpoint),
        batch.map((r) => r.sampleIndex),
        batch.map((r) => bodyOf(r.request).hash),
        keys,
      ],
    );
    inserted += res.rowCount ?? 0;
    if (!opts.ids) continue;
    if (batch.some((r) => r.runId !== batch[0]!.runId || r.stageId !== batch[0]!.stageId)) {
      throw new Error('prepareRequests: `ids` is for the rows of one run and stage');
    }
    for (const r of res.rows as { id: string; item_key: string; cache_key: string }[]) ids.set(r.item_key, { id: Number(r.id), cacheKey: r.cache_key });
    const existing = batch.filter((r) => !ids.has(r.itemKey));
    if (existing.length === 0) continue;
    const found = await db.$client.query<{ id: string; item_key: string; cache_key: string }>(
      'select id, item_key, cache_key from inference_requests where run_id = $1 and stage_id = $2 and item_key = any($3::text[])',
      [existing[0]!.runId, existing[0]!.stageId, existing.map((r) => r.itemKey)],
    );
    for (const r of found.rows) ids.set(r.item_key, { id: Number(r.id), cacheKey: r.cache_key });
  }
  return { inserted, ids };
}

/** The id range of a stage's request rows (`count` 0 and fromId > toId when it has none). */
export async function requestIdRange(db: Db, runId: string, stageId: string): Promise<{ fromId: number; toId: number; count: number }> {
  const res = await db.$client.query<{ from_id: string | null; to_id: string | null; n: string }>(
    `select min(id) as from_id, max(id) as to_id, count(*) as n from inference_requests where run_id = $1 and stage_id = $2`,
    [runId, stageId],
  );
  const row = res.rows[0];
  if (!row || row.from_id === null || row.to_id === null) return { fromId: 1, toId: 0, count: 0 };
  return { fromId: Number(row.from_id), toId: Number(row.to_id), count: Number(row.n) };
}

/** Stores image bytes content-addressed; returns the sha256 hex the messages reference. */
export async function storeImage(db: Db, bytes: Uint8Array, mime: string): Promise<string> {
  const hash = sha256Hex(bytes);
  await db.$client.query(`insert into blobs (hash, mime, size, bytes) values ($1, $2, $3, $4) on conflict (hash) do nothing`, [
    hash,
    mime,
    bytes.byteLength,
    Buffer.from(bytes),
  ]);
  return hash;
}

export async function loadBlobs(db: Db, hashes: readonly string[]): Promise<Map<string, { mime: string; bytes: Buffer }>> {
  const out = new Map<string, { mime: string; bytes: Buffer }>();
  if (hashes.length === 0) return out;
  const res = await db.$client.query<{ hash: string; mime: string; bytes: Buffer }>(`select hash, mime, bytes from blobs where hash = any($1::text[])`, [
    hashes,
  ]);
  for (const r of res.rows) out.set(r.hash, { mime: r.mime, bytes: r.bytes });
  return out;
}

export interface PendingRow {
  id: number;
  itemKey: string;
  sampleIndex: number;
  request: PreparedRequest;
  cacheKey: string | null;
}

/**
 * The pending rows (no result yet) of an id range, in id order, with their request bodies: each
 * distinct body is fetched and parsed once, and the rows sharing it share the object.
 * `includeFailed`: rows whose result is a failure count as pending too (a resumed stage sends
 * them again; a succeeded row is never sent again).
 */
export async function loadPendingRows(
  db: Db,
  q: { runId: string; stageId: string; endpointName: string; afterId: number; toId: number; limit: number; includeFailed?: boolean },
): Promise<PendingRow[]> {
  const res = await db.$client.query<{ id: string; item_key: string; sample_index: number; body_hash: string; cache_key: string | null }>(
    `select q.id, q.item_key, q.sample_index, q.body_hash, q.cache_key from inference_requests q
     where q.run_id = $1 and q.stage_id = $2 and q.endpoint = $3 and q.id > $4 and q.id <= $5
       and not exists (select 1 from inference_results r where r.request_id = q.id and (r.status = 'succeeded' or not $7::boolean))
     order by q.id limit $6`,
    [q.runId, q.stageId, q.endpointName, q.afterId, q.toId, q.limit, q.includeFailed === true],
  );
  if (res.rows.length === 0) return [];
  const hashes = [...new Set(res.rows.map((r) => r.body_hash))];
  const bodies = await db.$client.query<{ hash: string; body: PreparedRequest }>(`select hash, body from request_bodies where hash = any($1::text[])`, [
    hashes,
  ]);
  const byHash = new Map(bodies.rows.map((b) => [b.hash, b.body]));
  return res.rows.map((r) => {
    const request = byHash.get(r.body_hash);
    if (!request) throw new Error(`request ${r.id}: body ${r.body_hash} is missing from request_bodies`);
    return { id: Number(r.id), itemKey: r.item_key, sampleIndex: r.sample_index, request, cacheKey: r.cache_key };
  });
}

export async function lookupCache(db: Db, keys: readonly string[]): Promise<Map<string, InferenceOutput>> {
  const out = new Map<string, InferenceOutput>();
  if (keys.length === 0) return out;
  const res = await db.$client.query<{
    key: string;
    content: string;
    reasoning: string | null;
    finish_reason: string | null;
    prompt_tokens: number;
    completion_tokens: number;
    latency_ms: number;
  }>(`select key, content, reasoning, finish_reason, prompt_tokens, completion_tokens, latency_ms from inference_cache where key = any($1::text[])`, [keys]);
  for (const r of res.rows) {
    out.set(r.key, {
      content: r.content,
      reasoning: r.reasoning,
      finishReason: r.finish_reason,
      promptTokens: r.prompt_tokens,
      completionTokens: r.completion_tokens,
      latencyMs: r.latency_ms,
    });
  }
  return out;
}

/** The final state of one request row. */
export interface RowResult {
  id: number;
  status: 'succeeded' | 'failed';
  errorClass: string | null;
  error: string | null;
  attempts: number;
  cached: boolean;
  promptTokens: number | null;
  completionTokens: number | null;
  latencyMs: number | null;
  /**
   * Set for a completion this process received or shared (not a cache hit): it is added to the
   * cache in the same statement as the result, so no succeeded result is committed without it.
   */
  cacheEntry?: { key: string; fingerprint: string; model: string; output: InferenceOutput };
}

/** The result row of a request answered by the cache: nothing sent. */
export function cacheHitResult(id: number, hit: InferenceOutput): RowResult {
  return {
    id,
    status: 'succeeded',
    errorClass: null,
    error: null,
    attempts: 0,
    cached: true,
    promptTokens: hit.promptTokens,
    completionTokens: hit.completionTokens,
    latencyMs: 0,
  };
}

/**
 * The result row of what the gateway returned for a request. A received or shared output carries
 * its cache entry, written in the same statement: the twin that received a shared output may never
 * have committed it (its write failed, or has not happened yet), and a succeeded result must never
 * exist without its output. The first entry wins.
 */
export function completionResult(id: number, result: CompletionResult, entry: { key: string; fingerprint: string; model: string }): RowResult {
  if (!result.ok) {
    return {
      id,
      status: 'failed',
      errorClass: result.errorClass,
      error: result.error,
      attempts: result.attempts,
      cached: false,
      promptTokens: null,
      completionTokens: null,
      latencyMs: null,
    };
  }
  const o = result.output;
  return {
    id,
    status: 'succeeded',
    errorClass: null,
    error: null,
    attempts: result.attempts,
    cached: result.shared,
    promptTokens: o.promptTokens,
    completionTokens: o.completionTokens,
    latencyMs: result.shared ? 0 : o.latencyMs,
    cacheEntry: { ...entry, output: o },
  };
}

/**
 * Writes a batch of results in one statement: new cache entries and result rows. The first cache
 * entry wins; the first succeeded result wins (a zombie attempt finishing late changes nothing),
 * while a failed result is replaced by the outcome of a later send (a resumed stage sends failed
 * rows again). Insert-only for the request row and
 * its body are never rewritten (an update of the request row cost 1.3-3.2 ms a batch of 4 against
 * 0.8 ms for this). Rows travel as one JSON parameter each side: serializing it is native, unlike
 * pg's text[] literals.
 */
export async function writeResults(db: Db, results: readonly RowResult[]): Promise<void> {
  if (results.length === 0) return;
  const entries = new Map<string, unknown>();
  for (const r of results) {
    const c = r.cacheEntry;
    if (c && !entries.has(c.key)) {
      const o = c.output;
      entries.set(c.key, {
        k: c.key,
        f: c.fingerprint,
        m: c.model,
        c: o.content,
        r: o.reasoning,
        fr: o.finishReason,
        pt: o.promptTokens,
        ct: o.completionTokens,
        l: o.latencyMs,
      });
    }
  }
  const rows = results.map((r) => ({
    id: r.id,
    s: r.status,
    ec: r.errorClass,
    e: r.error,
    a: r.attempts,
    ca: r.cached,
    pt: r.promptTokens,
    ct: r.completionTokens,
    l: r.latencyMs,
  }));
  // Named: Postgres parses and plans it once per connection, not once per batch. Cache entries go in
  // key order: writes in flight at once (a chunk's two write lanes, chunks side by side) that share
  // keys take the keys' locks in the same order, so they wait for each other but never deadlock.
  await db.$client.query({
    name: 'jf_inference_write_results_v6',
    text: `with new_cache as (
       insert into inference_cache (key, endpoint_fingerprint, model, content, reasoning, finish_reason, prompt_tokens, completion_tokens, latency_ms)
       select k, f, m, c, r, fr, pt, ct, l
       from json_to_recordset($1::json) as t(k text, f text, m text, c text, r text, fr text, pt int, ct int, l int)
       order by k
       on conflict (key) do nothing
     )
     insert into inference_results (request_id, status, error_class, error, attempts, cached, prompt_tokens, completion_tokens, latency_ms)
     select id, s, ec, e, a, ca, pt, ct, l
     from json_to_recordset($2::json) as v(id bigint, s text, ec text, e text, a int, ca boolean, pt int, ct int, l int)
     on conflict (request_id) do update set
       status = excluded.status, error_class = excluded.error_class, error = excluded.error, attempts = excluded.attempts,
       cached = excluded.cached, prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens,
       latency_ms = excluded.latency_ms, finished_at = excluded.finished_at
     where inference_results.status = 'failed'`,
    values: [JSON.stringify([...entries.values()]), JSON.stringify(rows)],
  });
}

/**
 * Row counts of one activity's range (this stage and endpoint). `lost` counts succeeded rows whose
 * output is not in `inference_cache` (must be 0; `lostIds` names a few), so the check costs no
 * extra round trip.
 */
export async function rangeCounts(
  db: Db,
  q: { runId: string; stageId: string; endpointName: string; fromId: number; toId: number },
): Promise<{ succeeded: number; failed: number; cached: number; pending: number; lost: number; lostIds: number[] }> {
  const res = await db.$client.query<{ succeeded: string; failed: string; cached: string; pending: string; lost: string; lost_ids: string[] | null }>(
    `select count(*) filter (where r.status = 'succeeded') as succeeded,
            count(*) filter (where r.status = 'failed') as failed,
            count(*) filter (where r.status = 'succeeded' and r.cached) as cached,
            count(*) filter (where r.request_id is null) as pending,
            count(*) filter (where r.status = 'succeeded' and c.key is null) as lost,
            (array_agg(q.id order by q.id) filter (where r.status = 'succeeded' and c.key is null))[1:5] as lost_ids
     from inference_requests q left join inference_results r on r.request_id = q.id
     left join inference_cache c on c.key = q.cache_key and r.status = 'succeeded'
     where q.run_id = $1 and q.stage_id = $2 and q.endpoint = $3 and q.id between $4 and $5`,
    [q.runId, q.stageId, q.endpointName, q.fromId, q.toId],
  );
  const r = res.rows[0]!;
  return {
    succeeded: Number(r.succeeded),
    failed: Number(r.failed),
    cached: Number(r.cached),
    pending: Number(r.pending),
    lost: Number(r.lost),
    lostIds: (r.lost_ids ?? []).map(Number),
  };
}

export interface StageUsage {
  requests: number;
  succeeded: number;
  failed: number;
  pending: number;
  cached: number;
  /** Tokens of the requests actually sent (cache hits cost nothing). */
  promptTokens: number;
  completionTokens: number;
  /** From `price` (USD per million tokens); 0 without one. */
  costUsd: number;
}

/** Request totals of one stage. */
export async function stageUsage(db: Db, runId: string, stageId: string, price?: { input_per_mtok: number; output_per_mtok: number }): Promise<StageUsage> {
  const res = await db.$client.query<Record<string, string | null>>(
    `select count(*) as requests,
            count(*) filter (where r.status = 'succeeded') as succeeded,
            count(*) filter (where r.status = 'failed') as failed,
            count(*) filter (where r.request_id is null) as pending,
            count(*) filter (where r.status = 'succeeded' and r.cached) as cached,
            coalesce(sum(r.prompt_tokens) filter (where not r.cached), 0) as prompt_tokens,
            coalesce(sum(r.completion_tokens) filter (where not r.cached), 0) as completion_tokens
     from inference_requests q left join inference_results r on r.request_id = q.id
     where q.run_id = $1 and q.stage_id = $2`,
    [runId, stageId],
  );
  const r = res.rows[0]!;
  const promptTokens = Number(r.prompt_tokens);
  const completionTokens = Number(r.completion_tokens);
  return {
    requests: Number(r.requests),
    succeeded: Number(r.succeeded),
    failed: Number(r.failed),
    pending: Number(r.pending),
    cached: Number(r.cached),
    promptTokens,
    completionTokens,
    costUsd: price ? (promptTokens * price.input_per_mtok + completionTokens * price.output_per_mtok) / 1e6 : 0,
  };
}

/** One request row with its output (from the cache) when it succeeded. */
export interface RequestResult {
  id: number;
  itemKey: string;
  endpoint: string;
  sampleIndex: number;
  status: 'pending' | 'succeeded' | 'failed';
  errorClass: string | null;
  error: string | null;
  attempts: number;
  cached: boolean;
  content: string | null;
  reasoning: string | null;
  finishReason: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
  latencyMs: number | null;
}

/**
 * The rows of a stage with their outputs, in id order: all of them, an inclusive id range, or
 * the rows with the given item keys.
 */
export async function loadResults(
  db: Db,
  runId: string,
  stageId: string,
  only?: { fromId: number; toId: number } | { itemKeys: readonly string[] },
): Promise<RequestResult[]> {
  const byKeys = only !== undefined && 'itemKeys' in only;
  const res = await db.$client.query<{
    id: string;
    item_key: string;
    endpoint: string;
    sample_index: number;
    status: RequestResult['status'];
    error_class: string | null;
    error: string | null;
    attempts: number;
    cached: boolean | null;
    content: string | null;
    reasoning: string | null;
    finish_reason: string | null;
    prompt_tokens: number | null;
    completion_tokens: number | null;
    latency_ms: number | null;
  }>(
    `select q.id, q.item_key, q.endpoint, q.sample_index, coalesce(r.status, 'pending') as status, r.error_class, r.error,
            coalesce(r.attempts, 0) as attempts, r.cached,
            c.content, c.reasoning, c.finish_reason, r.prompt_tokens, r.completion_tokens, r.latency_ms
     from inference_requests q
     left join inference_results r on r.request_id = q.id
     left join inference_cache c on c.key = q.cache_key and r.status = 'succeeded'
     where q.run_id = $1 and q.stage_id = $2 and ${byKeys ? 'q.item_key = any($3::text[])' : 'q.id between $3 and $4'}
     order by q.id`,
    byKeys ? [runId, stageId, only.itemKeys] : [runId, stageId, only?.fromId ?? 0, only?.toId ?? Number.MAX_SAFE_INTEGER],
  );
  return res.rows.map((r) => ({
    id: Number(r.id),
    itemKey: r.item_key,
    endpoint: r.endpoint,
    sampleIndex: r.sample_index,
    status: r.status,
    errorClass: r.error_class,
    error: r.error,
    attempts: r.attempts,
    cached: r.cached === true,
    content: r.content,
    reasoning: r.reasoning,
    finishReason: r.finish_reason,
    promptTokens: r.prompt_tokens,
    completionTokens: r.completion_tokens,
    latencyMs: r.latency_ms,
  }));
}
