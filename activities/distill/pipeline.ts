/**
 * `distillItems`: distill's reject/retry loop run per item, for one range of the stage's items.
 *
 * Each item goes through its own attempts: the reasoning request of attempt `a` (sample index `a`),
 * then each rewrite pass while the trace stands, then its verdict; a rejected attempt starts the
 * next one at once, without waiting for the other items' attempts (the round-by-round loop waited
 * at every round for the slowest item and paid a step between rounds). The requests, their item
 * keys and the verdicts are those of the rounds, so both share cache entries and reach the same
 * accepted set.
 *
 * Durable and resumable: a request's row is written before it is sent and its result (with its
 * cache entry) before the item's next step reads it; each attempt ends in a `distill_attempts` row.
 * A retried activity replays every item's chain from the stored results and cache (no request
 * sent again for what is known) and sends only what was in flight or not yet begun.
 * Row inserts, cache lookups, result writes and attempt rows each go to Postgres as group commits:
 * one statement for whatever arrived while the previous one ran.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Db } from '../../db/client.js';
import type { EndpointSpec } from '../../workflows/types.js';
import { cacheKey, endpointFingerprint } from '../inference/cache-key.js';
import { EndpointFatalError, InferenceAbortedError, endpointFailure, toApplicationFailure } from '../inference/errors.js';
import { CallGroup, type CompletionResult, type InferenceGateway, type InferenceOutput } from '../inference/gateway.js';
import { GroupBatch } from '../inference/group.js';
import { resolveServedEndpoint } from '../inference/served.js';
import {
  cacheHitResult,
  completionResult,
  loadResults,
  lookupCache,
  prepareRequests,
  writeResults,
  type RequestResult,
  type RowResult,
} from '../inference/store.js';
import type { PrepareRequestRow } from '../inference/types.js';
import { judgeReasoning, judgeRewrite, type Completion } from './core.js';
import {
  attemptRowOf,
  completionOf,
  hintPatternsOf,
  loadCaptions,
  NO_IMAGE_CAPTION,
  reasonKey,
  reasonRequestRow,
  rewriteKey,
  rewriteRequestRow,
  writeAttempts,
  type AttemptRow,
  type ChainState,
  type McRow,
  type StageRef,
} from './steps.js';

const HEARTBEAT_MS = 1000;
const NO_IMAGES: ReadonlyMap<string, string> = new Map();

export type DistillItemsInput = StageRef & {
  /** The items with `fromIdx <= idx < toIdx` (source order). */
  fromIdx: number;
  toIdx: number;
  /** The specs of the reasoner's and the rewrite passes' endpoints, by name. */
  endpoints: Record<string, EndpointSpec>;
};

export interface DistillItemsOutput {
  items: number;
  /** Attempt rows written (every attempt of every item of the range). */
  tried: number;
  accepted: number;
  /** Requests of the range that ended failed (their attempts are rejected as request_failed). */
  failedRequests: number;
  /** HTTP requests this activity sent. */
  sent: number;
}

export interface DistillItemsProgress {
  done: number;
}

export function createDistillPipeline({ db, gateway }: { db: Db; gateway: InferenceGateway }) {
  return {
    async distillItems(input: DistillItemsInput): Promise<DistillItemsOutput> {
      const ctx = Context.current();
      const { runId, stageId, params } = input;
      // A fresh activity sends failed rows again (a resumed stage retries what failed); a retried
      // attempt keeps the outcomes its earlier attempts wrote.
      const resendFailed = ctx.info.attempt <= 1;

      const names = [params.reasoner, ...params.rewrites.map((p) => p.endpoint)];
      const resolved = new Map<string, { spec: EndpointSpec; live: EndpointSpec; fingerprint: string }>();
      for (const name of new Set(names)) {
        const spec = input.endpoints[name];
        if (!spec) throw ApplicationFailure.nonRetryable(`distill: no endpoint named "${name}" was passed to the stage`, 'EndpointConfigError');
        try {
          gateway.apiKey(name, spec);
        } catch (err) {
          if (err instanceof EndpointFatalError) throw toApplicationFailure(err);
          throw err;
        }
        // A served endpoint's URL is where its server listens now.
        resolved.set(name, { spec, live: await resolveServedEndpoint(db, spec), fingerprint: endpointFingerprint(spec) });
      }

      const items = (
        await db.$client.query<McRow>(
          `select m.item_key, m.query, m.image_hash, null as mime, m.candidates, m.best, m.meta from mc_items m
           where m.artifact_id = $1 and m.idx >= $2 and m.idx < $3 order by m.idx`,
          [input.sourceArtifactId, input.fromIdx, Math.min(input.toIdx, input.items)],
        )
      ).rows;
      const caps = await loadCaptions(db, input, items);
      // Everything the items' chains may already have: rows, results and outputs of earlier attempts.
      const known = new Map<string, RequestResult>();
      const keys = items.flatMap((i) =>
        Array.from({ length: params.max_attempts }, (_, a) => [
          reasonKey(i.item_key, a),
          ...params.rewrites.map((p) => rewriteKey(i.item_key, p.name, a)),
        ]).flat(),
      );
      for (const res of await loadResults(db, runId, stageId, { itemKeys: keys })) known.set(res.itemKey, res);

      const calls = new CallGroup();
      const onCancel = () => calls.abort();
      ctx.cancellationSignal.addEventListener('abort', onCancel, { once: true });
      const endpointSpecs = Object.fromEntries([...resolved].map(([n, e]) => [n, e.spec]));
      // Row inserts and look-ups in batches of about two endpoint windows: the first requests of a
      // range go out once their rows are in, not after all of the range's rows.
      const batch = Math.max(64, 2 * Math.max(...[...resolved.values()].map((e) => e.live.concurrency)));
      const rowIds = new GroupBatch<PrepareRequestRow, number>(async (rows) => {
        const { ids } = await prepareRequests(db, rows, endpointSpecs, { ids: true });
        return rows.map((r) => ids.get(r.itemKey)!.id);
      }, batch);
      const cache = new GroupBatch<string, InferenceOutput | undefined>(async (ks) => {
        const hits = await lookupCache(db, [...new Set(ks)]);
        return ks.map((k) => hits.get(k));
      }, batch);
      const results = new GroupBatch<RowResult, void>(async (rows) => {
        await writeResults(db, rows);
        return rows.map(() => undefined);
      });
      const attempts = new GroupBatch<AttemptRow, void>(async (rows) => {
        await writeAttempts(db, input, rows);
        return rows.map(() => undefined);
      });

      let sent = 0;
      let done = 0;
      let accepted = 0;
      let tried = 0;
      let failedRequests = 0;
      let fatal: { err: EndpointFatalError; endpoint: EndpointSpec } | undefined;
      const timer = setInterval(() => ctx.heartbeat({ done } satisfies DistillItemsProgress), HEARTBEAT_MS);

      /** One request of an item's chain: from what is stored, else sent; durable before it is read. */
      const obtain = async (row: PrepareRequestRow, priority?: number): Promise<{ id: number; out: Completion }> => {
        if (calls.aborted) throw new InferenceAbortedError('aborted');
        const stored = known.get(row.itemKey);
        if (stored && (stored.status === 'succeeded' || (stored.status === 'failed' && !resendFailed))) {
          if (stored.status === 'failed') failedRequests++;
          return { id: stored.id, out: completionOf(stored) };
        }
        const ep = resolved.get(row.endpoint)!;
        const key = cacheKey(ep.fingerprint, row.request, row.sampleIndex);
        // The row and the cache look-up at once: the key does not need the row.
        const [id, hit] = await Promise.all([stored?.id ?? rowIds.add(row), cache.add(key)]);
        if (hit) {
          await results.add(cacheHitResult(id, hit));
          return { id, out: outputCompletion(hit) };
        }
        // The re-send bound of the gateway: a slot per request sent and not yet recorded.
        const slots = gateway.unwrittenSlots(ep.live);
        await slots.acquire(undefined, priority ?? id);
        try {
          if (calls.aborted) throw new InferenceAbortedError('aborted');
          const result: CompletionResult = await gateway.complete(
            { endpointName: row.endpoint, endpoint: ep.live, key, request: row.request, sampleIndex: row.sampleIndex, images: NO_IMAGES },
            calls,
          );
          sent += result.sent;
          await results.add(completionResult(id, result, { key, fingerprint: ep.fingerprint, model: ep.spec.model }));
          if (result.ok) return { id, out: outputCompletion(result.output) };
          failedRequests++;
          return { id, out: { ok: false, content: '', reasoning: null, completionTokens: 0 } };
        } catch (err) {
          if (err instanceof EndpointFatalError) fatal ??= { err, endpoint: ep.live };
          calls.abort();
          throw err;
        } finally {
          slots.release();
        }
      };

      const patterns = hintPatternsOf(params);
      const labels = params.labels;
      const writes: Promise<void>[] = [];
      /** An item's attempts, until one is accepted or `max_attempts` are spent. */
      const runItem = async (item: McRow): Promise<void> => {
        try {
          await chainOf(item);
        } catch (err) {
          // One item's step failed: stop sending for the others too (the activity fails and is retried).
          calls.abort();
          throw err;
        }
      };
      const chainOf = async (item: McRow): Promise<void> => {
        const cap = item.image_hash ? caps.get(item.image_hash) : { text: NO_IMAGE_CAPTION, id: 0 };
        if (!cap) throw new Error(`distill: no caption request for image ${item.image_hash} of item ${item.item_key}; prepare the captions first`);
        const k = item.candidates.length;
        // Every request of an item waits in the limiter's queue with the id of its first one: a
        // retry goes before the first attempts of later items, so a range's items finish together
        // and the next range starts while this worker's other range still fills the endpoint.
        let priority: number | undefined;
        for (let attempt = 0; attempt < params.max_attempts; attempt++) {
          const requests: ChainState['requests'] = { caption: item.image_hash ? cap.id : null, reason: null, rewrites: {} };
          let state: ChainState;
          if (cap.text === null) {
            state = { item, requests, reason: 'request_failed', trace: '', choice: null, tokens: 0 };
          } else {
            const reason = await obtain(reasonRequestRow(input, item, cap.text, attempt), priority);
            requests.reason = reason.id;
            priority ??= reason.id;
            const v = judgeReasoning(reason.out, { k, best: item.best, labels, maxTraceTokens: params.max_trace_tokens });
            state = { item, requests, reason: v.reason, trace: v.trace, choice: v.choice, tokens: v.tokens };
            for (let pass = 0; pass < params.rewrites.length && state.reason === null; pass++) {
              const rw = await obtain(rewriteRequestRow(input, pass, item, state.trace, attempt), priority);
              requests.rewrites[params.rewrites[pass]!.name] = rw.id;
              const w = judgeRewrite(rw.out, { k, best: item.best, labels });
              state = { ...state, reason: w.reason, trace: w.reason === 'request_failed' ? state.trace : w.trace };
            }
          }
          const row = attemptRowOf(input, attempt, state, patterns);
          const written = attempts.add(row);
          written.catch(() => calls.abort()); // read below, with the other outcomes
          writes.push(written);
          tried++;
          if (row.status === 'accepted') {
            accepted++;
            break;
          }
        }
        done++;
      };

      const outcomes = await Promise.allSettled(items.map(runItem));
      const written = await Promise.allSettled(writes);
      clearInterval(timer);
      ctx.cancellationSignal.removeEventListener('abort', onCancel);
      ctx.heartbeat({ done } satisfies DistillItemsProgress);

      if (fatal) throw endpointFailure(fatal.err, fatal.endpoint);
      if (ctx.cancellationSignal.aborted) await ctx.cancelled;
      const failure = [...outcomes, ...written].find((o): o is PromiseRejectedResult => o.status === 'rejected');
      if (failure) {
        const err: unknown = failure.reason;
        if (err instanceof InferenceAbortedError) {
          // Aborted because another item's step failed: report that one.
          const first = [...outcomes, ...written].find(
            (o): o is PromiseRejectedResult => o.status === 'rejected' && !(o.reason instanceof InferenceAbortedError),
          );
          throw first?.reason ?? err;
        }
        throw err;
      }

      // The invariant every later step relies on: a succeeded request has its output.
      const lost = (
        await db.$client.query<{ n: string; ids: string[] | null }>(
          `select count(*) as n, (array_agg(q.id order by q.id))[1:5] as ids
           from inference_requests q join inference_results r on r.request_id = q.id and r.status = 'succeeded'
           left join inference_cache c on c.key = q.cache_key
           where q.run_id = $1 and q.stage_id = $2 and q.item_key = any($3::text[]) and c.key is null`,
          [runId, stageId, keys],
        )
      ).rows[0]!;
      if (Number(lost.n) > 0) {
        throw ApplicationFailure.create({
          type: 'InferenceIntegrityError',
          nonRetryable: true,
          message: `stage "${stageId}": ${lost.n} succeeded request(s) have no output in inference_cache (first ids: ${(lost.ids ?? []).join(', ')})`,
        });
      }
      return { items: items.length, tried, accepted, failedRequests, sent };
    },
  };
}

const outputCompletion = (o: InferenceOutput): Completion => ({ ok: true, content: o.content, reasoning: o.reasoning, completionTokens: o.completionTokens });
