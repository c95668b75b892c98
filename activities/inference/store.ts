/**
 * Postgres side of the gateway: preparing request rows, images, the content-addressed cache, batched
 * result writes and usage queries. Hot paths are single statements over `unnest`ed arrays: one round
 * trip per batch whatever its size.
 */
import type { Db } from '../../db/client.js';
import type { EndpointSpec } from '../../spec/endpoint.js';
import { cacheKey, endpointFingerprint, sha256Hex } from './cache-key.js';
import type { InferenceOutput } from './gateway.js';
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
): Promise<{ inserted: number }> {
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
  }
  let inserted = 0;
  for (let i = 0; i < rows.length; i += INSERT_BATCH) {
    const batch = rows.slice(i, i + INSERT_BATCH);
    const res = await db.$client.query(
      `insert into inference_requests (run_id, stage_id, item_key, endpoint, sample_index, request, cache_key)
       select run_id, stage_id, item_key, endpoint, sample_index, request, cache_key
       from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::jsonb[], $7::text[])
         with ordinality as t(run_id, stage_id, item_key, endpoint, sample_index, request, cache_key, ord)
       order by ord
       on conflict (run_id, stage_id, item_key) do nothing`,
      [
        batch.map((r) => r.runId),
        batch.map((r) => r.stageId),
        batch.map((r) => r.itemKey),
        batch.map((r) => r.endpoint),
        batch.map((r) => r.sampleIndex),
        batch.map((r) => JSON.stringify(r.request)),
        batch.map((r) => cacheKey(fingerprints.get(r.endpoint)!, r.request, r.sampleIndex)),
      ],
    );
    inserted += res.rowCount ?? 0;
  }
  return { inserted };
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
  await db.$client.query(
    `insert into blobs (hash, mime, size, bytes) values ($1, $2, $3, $4) on conflict (hash) do nothing`,
    [hash, mime, bytes.byteLength, Buffer.from(bytes)],
  );
  return hash;
}

export async function loadBlobs(db: Db, hashes: readonly string[]): Promise<Map<string, { mime: string; bytes: Buffer }>> {
  const out = new Map<string, { mime: string; bytes: Buffer }>();
  if (hashes.length === 0) return out;
  const res = await db.$client.query<{ hash: string; mime: string; bytes: Buffer }>(
    `select hash, mime, bytes from blobs where hash = any($1::text[])`,
    [hashes],
  );
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

export async function loadPendingRows(
  db: Db,
  q: { runId: string; stageId: string; endpointName: string; afterId: number; toId: number; limit: number },
): Promise<PendingRow[]> {
  const res = await db.$client.query<{ id: string; item_key: string; sample_index: number; request: PreparedRequest; cache_key: string | null }>(
    `select id, item_key, sample_index, request, cache_key from inference_requests
     where run_id = $1 and stage_id = $2 and endpoint = $3 and status = 'pending' and id > $4 and id <= $5
     order by id limit $6`,
    [q.runId, q.stageId, q.endpointName, q.afterId, q.toId, q.limit],
  );
  return res.rows.map((r) => ({ id: Number(r.id), itemKey: r.item_key, sampleIndex: r.sample_index, request: r.request, cacheKey: r.cache_key }));
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
  }>(
    `select key, content, reasoning, finish_reason, prompt_tokens, completion_tokens, latency_ms from inference_cache where key = any($1::text[])`,
    [keys],
  );
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
  /** Set for a completion this process received (not a cache hit): it is added to the cache. */
  cacheEntry?: { key: string; fingerprint: string; model: string; output: InferenceOutput };
}

/**
 * Writes a batch of results in one statement: new cache entries (first writer wins) and the request
 * rows, only while still pending (a zombie attempt finishing late changes nothing). Rows travel as
 * one JSON parameter each side: serializing it is native, unlike pg's text[] literals.
 */
export async function writeResults(db: Db, results: readonly RowResult[]): Promise<void> {
  if (results.length === 0) return;
  const entries = new Map<string, unknown>();
  for (const r of results) {
    const c = r.cacheEntry;
    if (c && !entries.has(c.key)) {
      const o = c.output;
      entries.set(c.key, { k: c.key, f: c.fingerprint, m: c.model, c: o.content, r: o.reasoning, fr: o.finishReason, pt: o.promptTokens, ct: o.completionTokens, l: o.latencyMs });
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
  // Named: Postgres parses and plans it once per connection, not once per batch.
  await db.$client.query({
    name: 'jf_inference_write_results_v2',
    text: `with new_cache as (
       insert into inference_cache (key, endpoint_fingerprint, model, content, reasoning, finish_reason, prompt_tokens, completion_tokens, latency_ms)
       select k, f, m, c, r, fr, pt, ct, l
       from json_to_recordset($1::json) as t(k text, f text, m text, c text, r text, fr text, pt int, ct int, l int)
       on conflict (key) do nothing
     )
     update inference_requests q set
       status = v.s, error_class = v.ec, error = v.e, attempts = q.attempts + v.a, cached = v.ca,
       prompt_tokens = v.pt, completion_tokens = v.ct, latency_ms = v.l, finished_at = now()
     from json_to_recordset($2::json) as v(id bigint, s text, ec text, e text, a int, ca boolean, pt int, ct int, l int)
     where q.id = v.id and q.status = 'pending'`,
    values: [JSON.stringify([...entries.values()]), JSON.stringify(rows)],
  });
}

/** Row counts of one activity's range (this stage and endpoint). */
export async function rangeCounts(
  db: Db,
  q: { runId: string; stageId: string; endpointName: string; fromId: number; toId: number },
): Promise<{ succeeded: number; failed: number; cached: number; pending: number }> {
  const res = await db.$client.query<{ succeeded: string; failed: string; cached: string; pending: string }>(
    `select count(*) filter (where status = 'succeeded') as succeeded,
            count(*) filter (where status = 'failed') as failed,
            count(*) filter (where status = 'succeeded' and cached) as cached,
            count(*) filter (where status = 'pending') as pending
     from inference_requests where run_id = $1 and stage_id = $2 and endpoint = $3 and id between $4 and $5`,
    [q.runId, q.stageId, q.endpointName, q.fromId, q.toId],
  );
  const r = res.rows[0]!;
  return { succeeded: Number(r.succeeded), failed: Number(r.failed), cached: Number(r.cached), pending: Number(r.pending) };
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
export async function stageUsage(
  db: Db,
  runId: string,
  stageId: string,
  price?: { input_per_mtok: number; output_per_mtok: number },
): Promise<StageUsage> {
  const res = await db.$client.query<Record<string, string | null>>(
    `select count(*) as requests,
            count(*) filter (where status = 'succeeded') as succeeded,
            count(*) filter (where status = 'failed') as failed,
            count(*) filter (where status = 'pending') as pending,
            count(*) filter (where status = 'succeeded' and cached) as cached,
            coalesce(sum(prompt_tokens) filter (where cached is not true), 0) as prompt_tokens,
            coalesce(sum(completion_tokens) filter (where cached is not true), 0) as completion_tokens
     from inference_requests where run_id = $1 and stage_id = $2`,
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
    `select r.id, r.item_key, r.endpoint, r.sample_index, r.status, r.error_class, r.error, r.attempts, r.cached,
            c.content, c.reasoning, c.finish_reason, r.prompt_tokens, r.completion_tokens, r.latency_ms
     from inference_requests r
     left join inference_cache c on c.key = r.cache_key and r.status = 'succeeded'
     where r.run_id = $1 and r.stage_id = $2 and ${byKeys ? 'r.item_key = any($3::text[])' : 'r.id between $3 and $4'}
     order by r.id`,
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
