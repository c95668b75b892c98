/**
 * The `executeRequests` activity: sends the pending request rows of one id range through the
 * gateway and records every outcome, resumably.
 *
 * Pages of pending rows are loaded in id order and their cache keys looked up in bulk; cache misses
 * go to the gateway a slice at a time (images loaded in bulk per slice, at most two slices ahead of
 * the limiter); results are written by a group-commit writer (one statement per batch, the next
 * batch gathering while one is written). The heartbeat carries a cursor: every row of the range with
 * id <= cursor is finished and written. A retried attempt starts after it; rows it still finds
 * pending were in flight or unwritten when the previous attempt died, and are sent again.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Db } from '../../db/client.js';
import { cacheKey, endpointFingerprint } from './cache-key.js';
import { EndpointFatalError, InferenceAbortedError, endpointFailure, toApplicationFailure } from './errors.js';
import { CallGroup, toDataUrl, type CompletionResult, type InferenceGateway } from './gateway.js';
import { resolveServedEndpoint } from './served.js';
import {
  cacheHitResult,
  completionResult,
  loadBlobs,
  loadPendingRows,
  lookupCache,
  rangeCounts,
  writeResults,
  type PendingRow,
  type RowResult,
} from './store.js';
import type { ExecuteRequestsInput, ExecuteRequestsOutput, ExecuteRequestsProgress, PreparedRequest } from './types.js';

const PAGE_SIZE = 1000;
const MIN_SLICE = 64;
const WRITE_BATCH = 500;
const HEARTBEAT_MS = 1000;

/** Tracks which loaded ids are finished and written, in id order. */
class Cursor {
  private readonly ids: number[] = [];
  private readonly written = new Set<number>();
  private head = 0;

  constructor(private position: number) {}

  add(ids: readonly number[]): void {
    this.ids.push(...ids);
  }

  markWritten(ids: readonly number[]): void {
    for (const id of ids) this.written.add(id);
    while (this.head < this.ids.length && this.written.has(this.ids[this.head]!)) {
      this.written.delete(this.ids[this.head]!);
      this.position = this.ids[this.head]!;
      this.head++;
    }
  }

  /** Highest id below which every loaded row is written (rows not loaded were not pending). */
  get value(): number {
    return this.position;
  }
}

/**
 * Group commit: a result is written at once when no write is in flight; results arriving during a
 * write go out together in the next one (so batches grow with load, one statement each). Rows not
 * yet written when the process dies stay pending and are sent again by the next attempt: writing
 * at once keeps that to the rows of about one write round trip beyond the in-flight window.
 * (A linger of 5-20 ms to build bigger batches measured no faster here.)
 */
class ResultWriter {
  private buffer: RowResult[] = [];
  private running: Promise<void> | undefined;
  error: unknown;

  constructor(
    private readonly db: Db,
    private readonly onWritten: (batch: readonly RowResult[]) => void,
    private readonly onError: (err: unknown) => void,
  ) {}

  add(result: RowResult): void {
    this.buffer.push(result);
    if (!this.running && this.error === undefined) this.running = this.drain();
  }

  private async drain(): Promise<void> {
    try {
      while (this.buffer.length > 0) {
        const batch = this.buffer.splice(0, WRITE_BATCH);
        await writeResults(this.db, batch);
        this.onWritten(batch);
      }
    } catch (err) {
      this.error = err;
      this.onError(err);
    } finally {
      this.running = undefined;
    }
  }

  async close(): Promise<void> {
    while (this.running) await this.running;
    if (this.error !== undefined) throw this.error;
  }
}

function imageHashes(request: PreparedRequest, into: Set<string>): void {
  for (const m of request.messages) {
    if (typeof m.content === 'string') continue;
    for (const p of m.content) if (p.type === 'image_ref') into.add(p.hash);
  }
}

export async function executeRequests(deps: { db: Db; gateway: InferenceGateway }, input: ExecuteRequestsInput): Promise<ExecuteRequestsOutput> {
  const { db, gateway } = deps;
  const { runId, stageId, endpointName, fromId, toId } = input;
  const ctx = Context.current();
  // A served endpoint's URL is where its server listens now (it may have moved since the workflow began).
  const endpoint = await resolveServedEndpoint(db, input.endpoint);
  const resumed = ctx.info.heartbeatDetails as ExecuteRequestsProgress | undefined;
  const start = Math.max(fromId - 1, typeof resumed?.cursor === 'number' ? resumed.cursor : fromId - 1);
  // A fresh activity sends the range's failed rows again (a resumed stage retries what failed, e.g.
  // while its endpoint was down); a retried attempt keeps the outcomes its earlier attempts wrote.
  const includeFailed = ctx.info.attempt <= 1 && resumed === undefined;

  try {
    // Fail before touching any row when the key's env var is missing.
    gateway.apiKey(endpointName, endpoint);
  } catch (err) {
    if (err instanceof EndpointFatalError) throw toApplicationFailure(err);
    throw err;
  }

  const fingerprint = endpointFingerprint(endpoint);
  const calls = new CallGroup();
  const onCancel = () => calls.abort();
  ctx.cancellationSignal.addEventListener('abort', onCancel, { once: true });

  const cursor = new Cursor(start);
  let fatal: EndpointFatalError | undefined;
  let crash: unknown;
  // The SDK throttles heartbeats anyway; each call still converts its payload, so tick by time.
  const heartbeat = () => ctx.heartbeat({ cursor: cursor.value } satisfies ExecuteRequestsProgress);
  const unwritten = gateway.unwrittenSlots(endpoint);
  // Rows holding an unwritten-result slot: given back when written, or when the call ends unrecorded.
  const holding = new Set<number>();
  const giveBack = (id: number) => {
    if (holding.delete(id)) unwritten.release();
  };
  const writer = new ResultWriter(
    db,
    (batch) => {
      cursor.markWritten(batch.map((r) => r.id));
      for (const r of batch) giveBack(r.id);
    },
    () => {
      calls.abort();
      // Nothing more will be written by this activity: free its slots for the others.
      for (const id of [...holding]) giveBack(id);
    },
  );
  const timer = setInterval(heartbeat, HEARTBEAT_MS);

  let sent = 0;
  let promptTokens = 0;
  let completionTokens = 0;
  let unfinished = 0;
  let wake: (() => void) | undefined;
  const settled = () => {
    unfinished--;
    wake?.();
  };

  const record = (row: PendingRow, key: string, result: CompletionResult) => {
    sent += result.sent;
    if (result.ok && !result.shared) {
      promptTokens += result.output.promptTokens;
      completionTokens += result.output.completionTokens;
    }
    writer.add(completionResult(row.id, result, { key, fingerprint, model: endpoint.model }));
  };

  /** Data URLs of the images a slice's rows reference: the LRU first, then one query. */
  const resolveImages = async (rows: readonly PendingRow[]): Promise<Map<string, string>> => {
    const wanted = new Set<string>();
    for (const r of rows) imageHashes(r.request, wanted);
    const images = new Map<string, string>();
    const missing: string[] = [];
    for (const h of wanted) {
      const url = gateway.images.get(h);
      if (url !== undefined) images.set(h, url);
      else missing.push(h);
    }
    if (missing.length > 0) {
      const blobs = await loadBlobs(db, missing);
      for (const h of missing) {
        const blob = blobs.get(h);
        if (!blob) throw new Error(`image ${h} referenced by a request of stage "${stageId}" is not in blobs (store it with storeImage first)`);
        const url = toDataUrl(blob.mime, blob.bytes);
        gateway.images.put(h, url);
        images.set(h, url);
      }
    }
    return images;
  };

  const dispatch = (row: PendingRow, key: string, images: ReadonlyMap<string, string>) => {
    unfinished++;
    const p: Promise<void> = gateway.complete({ endpointName, endpoint, key, request: row.request, sampleIndex: row.sampleIndex, images }, calls).then(
      (result) => {
        inflight.delete(p);
        settled();
        record(row, key, result);
      },
      (err: unknown) => {
        inflight.delete(p);
        settled();
        giveBack(row.id);
        // Our own stop (cancel, fatal error elsewhere): nothing to record.
        if (err instanceof InferenceAbortedError && calls.aborted) return;
        if (err instanceof EndpointFatalError) fatal ??= err;
        else crash ??= err;
        calls.abort();
      },
    );
    inflight.add(p);
  };

  // Rows are handed to the limiter a slice at a time, at most two slices ahead: enough to keep it
  // full (the other chunk activities feed it too), while only those rows pin image data in memory.
  const slice = Math.min(PAGE_SIZE, Math.max(MIN_SLICE, 2 * endpoint.concurrency));
  const inflight = new Set<Promise<void>>();
  let failure: unknown;
  try {
    heartbeat();
    let after = start;
    pages: for (;;) {
      const rows = await loadPendingRows(db, { runId, stageId, endpointName, afterId: after, toId, limit: PAGE_SIZE, includeFailed });
      if (rows.length === 0) break;
      after = rows[rows.length - 1]!.id;
      cursor.add(rows.map((r) => r.id));
      const keys = rows.map((r) => r.cacheKey ?? cacheKey(fingerprint, r.request, r.sampleIndex));
      const hits = await lookupCache(db, [...new Set(keys)]);

      const misses: { row: PendingRow; key: string }[] = [];
      rows.forEach((row, i) => {
        const key = keys[i]!;
        const hit = hits.get(key);
        if (!hit) return void misses.push({ row, key });
        writer.add(cacheHitResult(row.id, hit));
      });
      for (let i = 0; i < misses.length; i += slice) {
        while (unfinished > slice && !calls.aborted) await new Promise<void>((r) => (wake = r));
        if (calls.aborted) break pages;
        const part = misses.slice(i, i + slice);
        const images = await resolveImages(part.map((m) => m.row));
        for (const m of part) {
          // Lowest id first across this worker's activities: the oldest chunk finishes first while
          // the next one fills in behind it, instead of all chunks ending (and draining) together.
          await unwritten.acquire(undefined, m.row.id);
          if (calls.aborted) {
            unwritten.release();
            break pages;
          }
          holding.add(m.row.id);
          dispatch(m.row, m.key, images);
        }
      }
    }
    await Promise.all(inflight);
  } catch (err) {
    failure = err;
  } finally {
    // Only when loading failed are requests still running here: stop them.
    if (inflight.size > 0) calls.abort();
    await Promise.allSettled(inflight);
    clearInterval(timer);
    ctx.cancellationSignal.removeEventListener('abort', onCancel);
  }
  // Whatever happened, what was received is written: a retry will not send it again.
  try {
    await writer.close();
  } catch (err) {
    failure ??= err;
  } finally {
    for (const id of [...holding]) giveBack(id);
  }
  heartbeat();

  if (fatal) throw endpointFailure(fatal, endpoint);
  if (failure !== undefined) throw failure;
  if (crash !== undefined) throw crash;
  if (ctx.cancellationSignal.aborted) await ctx.cancelled;

  const counts = await rangeCounts(db, { runId, stageId, endpointName, fromId, toId });
  if (counts.lost > 0) {
    // The invariant every later step relies on: a succeeded request has its output. Stop loudly
    // rather than let judgments read a missing output as an unparseable one.
    throw ApplicationFailure.create({
      type: 'InferenceIntegrityError',
      nonRetryable: true,
      message:
        `stage "${stageId}": ${counts.lost} succeeded request(s) of ids ${fromId}-${toId} have no output in inference_cache ` +
        `(first ids: ${counts.lostIds.join(', ')}); their results were written without their outputs`,
    });
  }
  return { succeeded: counts.succeeded, failed: counts.failed, cached: counts.cached, sent, promptTokens, completionTokens };
}
