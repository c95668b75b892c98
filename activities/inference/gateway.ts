/**
 * The inference gateway: one per worker process, shared by every activity the worker runs.
 * It owns the `openai` clients (maxRetries 0: the per-item retry loop here is the only retry layer
 * for item faults), the per-endpoint limits, the collapsing of identical requests in flight, the
 * image data-URL cache, and the single mapping of call errors to outcomes.
 *
 * It holds no state that must survive the process: everything durable lives in Postgres.
 */
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import { DEFAULT_DOWN_AFTER_S, type EndpointSpec } from '../../spec/endpoint.js';
import { limiterKey, sha256Hex } from './cache-key.js';
import {
  EndpointFatalError,
  InferenceAbortedError,
  InferenceItemError,
  InferenceTransientError,
  classifyInferenceError,
  type EndpointIdentity,
} from './errors.js';
import { EndpointLimiter, Semaphore, sleep } from './limits.js';
import { TransportTimeoutError, nodeTransport, type NodeTransport, type RawResponse } from './transport.js';
import type { PreparedContentPart, PreparedMessage, PreparedRequest } from './types.js';

/** A successful completion, as cached and stored. */
export interface InferenceOutput {
  content: string;
  reasoning: string | null;
  finishReason: string | null;
  promptTokens: number;
  completionTokens: number;
  latencyMs: number;
}

interface Accounting {
  /** Attempts this call made (0 when served by an identical request in flight). */
  attempts: number;
  /** HTTP requests this call sent. */
  sent: number;
  /** Served by an identical request already in flight in this process. */
  shared: boolean;
}

export type CompletionResult = ({ ok: true; output: InferenceOutput } & Accounting) | ({ ok: false; errorClass: string; error: string } & Accounting);

export interface CompletionCall {
  endpointName: string;
  endpoint: EndpointSpec;
  /** The request's cache key: identical keys in flight at once are sent once. */
  key: string;
  request: PreparedRequest;
  sampleIndex: number;
  /** Data URLs of the images the messages reference, by blob hash. */
  images: ReadonlyMap<string, string>;
}

/** One HTTP attempt, reported to `onAttempt` (tests and metrics). */
export interface AttemptEvent {
  key: string;
  endpoint: string;
  attempt: number;
  startedAt: number;
  endedAt: number;
  /** 'ok' or the error kind (rate_limited, server_error, timeout, connection, malformed_response, …). */
  outcome: string;
  status?: number;
  /** After a 429: how long the gateway waits before this key's next attempt (capped retry-after). */
  waitMs?: number;
}

export interface InferenceGatewayOptions {
  /** Exponential backoff for 5xx, timeouts, connection errors and malformed bodies (full jitter). */
  backoff?: { baseMs?: number; maxMs?: number };
  /** Bytes of image data URLs kept in memory across batches (LRU by hash). Default 64 MiB. */
  imageCacheBytes?: number;
  /** Where API keys are read from (default `process.env`). Keys are never stored elsewhere. */
  env?: NodeJS.ProcessEnv;
  onAttempt?: (event: AttemptEvent) => void;
}

/** An LRU of data URLs by blob hash, bounded by total string length. */
export class ImageCache {
  private readonly entries = new Map<string, string>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(hash: string): string | undefined {
    const v = this.entries.get(hash);
    if (v !== undefined) {
      this.entries.delete(hash);
      this.entries.set(hash, v);
    }
    return v;
  }

  put(hash: string, dataUrl: string): void {
    if (this.entries.has(hash)) return;
    this.entries.set(hash, dataUrl);
    this.bytes += dataUrl.length;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes || this.entries.size <= 1) break;
      this.entries.delete(k);
      this.bytes -= v.length;
    }
  }
}

export function toDataUrl(mime: string, bytes: Uint8Array): string {
  return `data:${mime};base64,${Buffer.from(bytes).toString('base64')}`;
}

interface Job {
  promise: Promise<CompletionResult>;
  controller: AbortController;
  /** Drops it from the in-flight map, so later callers send afresh instead of joining an aborted job. */
  forget: () => void;
  /** Callers awaiting it; when the last one is aborted the request is aborted too. */
  waiters: number;
  settled: boolean;
}

/** What a chat completion is sent with: the URL and headers the `openai` client builds for it. */
interface Wire {
  url: URL;
  headers: Record<string, string>;
  transport: NodeTransport;
  timeoutMs: number;
}

interface ClientEntry {
  client: OpenAI;
  transport: NodeTransport;
  wire?: Promise<Wire>;
  /** `wire` once it has resolved: read without an await. */
  ready?: Wire;
}

interface EndpointContext {
  name: string;
  ident: EndpointIdentity;
  entry: ClientEntry;
  limiter: EndpointLimiter;
  limKey: string;
}

interface GroupWaiter {
  job: Job;
  reject: (err: Error) => void;
}

/**
 * The calls of one activity: aborting the group rejects its pending calls and aborts the requests
 * nobody else awaits. (One registry instead of an abort listener per call: listeners on one
 * AbortSignal cost O(n) each to add.)
 */
export class CallGroup {
  aborted = false;
  /** @internal */
  readonly waiters = new Set<GroupWaiter>();

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) {
      w.job.waiters--;
      if (w.job.waiters === 0 && !w.job.settled) {
        w.job.forget();
        w.job.controller.abort();
      }
      w.reject(new InferenceAbortedError('aborted'));
    }
  }
}

const IMAGE_TOKEN_ESTIMATE = 765;
const RECENT_OUTPUTS = 4096;
const DEFAULT_MAX_TOKENS_ESTIMATE = 1024;

/** Rough prompt size for the tokens/minute bucket: 4 characters a token, a fixed cost per image. */
export function estimateTokens(request: PreparedRequest): number {
  let n = 0;
  for (const m of request.messages) {
    if (typeof m.content === 'string') n += Math.ceil(m.content.length / 4);
    else for (const p of m.content) n += p.type === 'text' ? Math.ceil(p.text.length / 4) : IMAGE_TOKEN_ESTIMATE;
  }
  const maxTokens = typeof request.params.max_tokens === 'number' ? request.params.max_tokens : DEFAULT_MAX_TOKENS_ESTIMATE;
  return n + maxTokens;
}

function toWireMessage(m: PreparedMessage, images: ReadonlyMap<string, string>): unknown {
  if (typeof m.content === 'string') return m;
  return {
    role: m.role,
    content: m.content.map((p: PreparedContentPart) => {
      if (p.type !== 'image_ref') return p;
      const url = images.get(p.hash);
      if (url === undefined) throw new Error(`image ${p.hash} was not loaded before sending (bug in the caller)`);
      return { type: 'image_url', image_url: { url } };
    }),
  };
}

/** The seed sent for one sample: `seed + sampleIndex`, so samples differ yet stay reproducible. */
export function sampleSeed(seed: number, sampleIndex: number): number {
  return seed + sampleIndex;
}

function malformed(what: string): InferenceTransientError {
  return new InferenceTransientError('malformed_response', `malformed response: ${what}`, 200);
}

const NEEDS_CLEANING = /[\u0000\uD800-\uDFFF]/;
const NUL_OR_LONE_SURROGATE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Postgres text holds neither NUL nor lone surrogates: they become U+FFFD instead of failing the write. */
export function storableText(s: string): string {
  return NEEDS_CLEANING.test(s) ? s.replace(NUL_OR_LONE_SURROGATE, '\uFFFD') : s;
}

/** Validates a 200 body: the client returns strings and arbitrary JSON as they came. */
export function parseCompletion(body: unknown): Omit<InferenceOutput, 'latencyMs'> {
  if (typeof body !== 'object' || body === null) throw malformed(`expected a chat completion object, got ${typeof body}`);
  const choices = (body as { choices?: unknown }).choices;
  if (!Array.isArray(choices) || choices.length === 0) throw malformed('no choices');
  const choice = choices[0] as { message?: unknown; finish_reason?: unknown };
  const message = choice?.message as { content?: unknown; reasoning_content?: unknown; reasoning?: unknown } | undefined;
  if (typeof message !== 'object' || message === null) throw malformed('choice without a message');
  if (message.content !== null && message.content !== undefined && typeof message.content !== 'string') throw malformed('message content is not a string');
  const reasoningRaw =
    typeof message.reasoning_content === 'string' ? message.reasoning_content : typeof message.reasoning === 'string' ? message.reasoning : null;
  const usage = (body as { usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } }).usage;
  return {
    content: typeof message.content === 'string' ? storableText(message.content) : '',
    reasoning: reasoningRaw === null ? null : storableText(reasoningRaw),
    finishReason: typeof choice.finish_reason === 'string' ? choice.finish_reason : null,
    promptTokens: typeof usage?.prompt_tokens === 'number' ? usage.prompt_tokens : 0,
    completionTokens: typeof usage?.completion_tokens === 'number' ? usage.completion_tokens : 0,
  };
}

export function endpointIdentity(name: string, endpoint: EndpointSpec): EndpointIdentity {
  return { name, baseUrl: endpoint.base_url, model: endpoint.model, apiKeyEnv: endpoint.api_key_env };
}

export class InferenceGateway {
  private readonly clients = new Map<string, ClientEntry>();
  private readonly limiters = new Map<string, EndpointLimiter>();
  private readonly unwritten = new Map<string, Semaphore>();
  private readonly recent = new Map<string, InferenceOutput>();
  private readonly inflight = new Map<string, Job>();
  /** Per endpoint (limiter key): since when no request got any answer, and the latest such failure. */
  private readonly silence = new Map<string, { since: number; last: number }>();
  private readonly contexts = new WeakMap<EndpointSpec, EndpointContext>();
  readonly images: ImageCache;
  private readonly backoffBase: number;
  private readonly backoffMax: number;
  private readonly env: NodeJS.ProcessEnv;
  private readonly onAttempt?: (event: AttemptEvent) => void;
  /** HTTP requests this process sent, by endpoint (server#model). */
  readonly sentByEndpoint = new Map<string, number>();

  constructor(options: InferenceGatewayOptions = {}) {
    this.backoffBase = options.backoff?.baseMs ?? 1000;
    this.backoffMax = options.backoff?.maxMs ?? 30_000;
    this.images = new ImageCache(options.imageCacheBytes ?? 64 * 1024 * 1024);
    this.env = options.env ?? process.env;
    this.onAttempt = options.onAttempt;
  }

  /**
   * The API key named by `api_key_env`, read at use. Throws an endpoint-fatal error naming the
   * variable (never its value) when it is not set.
   */
  apiKey(endpointName: string, endpoint: EndpointSpec): string {
    if (!endpoint.api_key_env) return 'EMPTY';
    const key = this.env[endpoint.api_key_env];
    if (!key) {
      throw new EndpointFatalError(
        'EndpointConfigError',
        `endpoint "${endpointName}": the environment variable ${endpoint.api_key_env} (api_key_env) is not set in the worker's environment`,
      );
    }
    return key;
  }

  /** The client for an endpoint; built once per (base URL, key, timeout). */
  client(endpointName: string, endpoint: EndpointSpec): OpenAI {
    return this.clientEntry(endpointName, endpoint).client;
  }

  private clientEntry(endpointName: string, endpoint: EndpointSpec): ClientEntry {
    const apiKey = this.apiKey(endpointName, endpoint);
    // A changed key gets a new client; the map holds only the key's hash.
    const id = `${endpoint.base_url}\u0000${endpoint.api_key_env ?? ''}\u0000${sha256Hex(apiKey)}\u0000${endpoint.timeout_s}`;
    let entry = this.clients.get(id);
    if (!entry) {
      // The lean transport: the stock fetch's web streams double the client's CPU per call.
      const transport = nodeTransport();
      const client = new OpenAI({ baseURL: endpoint.base_url, apiKey, maxRetries: 0, timeout: endpoint.timeout_s * 1000, fetch: transport.fetch });
      entry = { client, transport };
      this.clients.set(id, entry);
    }
    return entry;
  }

  /**
   * The URL and headers of a chat completion, as the client builds them (user agent, platform
   * headers, organization and project, the key), asked of the client once per client: the
   * per-call work of the SDK (building and copying headers, option encoders, a debug record of
   * every request even with logging off, an abort controller) cost more CPU than the HTTP call.
   */
  private wire(entry: ClientEntry): Promise<Wire> {
    if (!entry.wire) {
      const pending = entry.client.buildRequest({ method: 'post', path: '/chat/completions', body: {} }).then(({ req, url, timeout }) => {
        const headers: Record<string, string> = {};
        new Headers(req.headers as HeadersInit).forEach((v, k) => {
          if (k !== 'content-length' && k !== 'idempotency-key') headers[k] = v;
        });
        entry.ready = { url: new URL(url), headers, transport: entry.transport, timeoutMs: timeout };
        return entry.ready;
      });
      entry.wire = pending;
      // A failure is not kept: the next call asks again.
      pending.catch(() => {
        if (entry.wire === pending) entry.wire = undefined;
      });
    }
    return entry.wire;
  }

  /**
   * One chat completion, with the `openai` client's semantics and error classes (so
   * `classifyInferenceError` reads it as it reads the client's own calls): `APIUserAbortError`
   * when `signal` aborts, `APIConnectionTimeoutError` after the client's timeout,
   * `APIConnectionError` for socket faults, `APIError.generate` for a non-2xx status; a JSON body
   * parsed (a `SyntaxError` if it does not parse), any other body as text.
   */
  private async chatCompletion(entry: ClientEntry, body: unknown, signal: AbortSignal): Promise<unknown> {
    const wire = entry.ready ?? (await this.wire(entry));
    if (signal.aborted) throw new APIUserAbortError();
    let res: RawResponse;
    try {
      res = await wire.transport.request(wire.url, 'POST', wire.headers, JSON.stringify(body), signal, wire.timeoutMs);
    } catch (err) {
      if (signal.aborted) throw new APIUserAbortError();
      if (err instanceof TransportTimeoutError) throw new APIConnectionTimeoutError();
      const text = `${String(err)} ${err instanceof Error && err.cause !== undefined ? String(err.cause) : ''}`;
      if (/timed? ?out/i.test(text)) throw new APIConnectionTimeoutError();
      throw new APIConnectionError({ message: 'Connection error.', cause: err instanceof Error ? err : new Error(String(err)) });
    }
    if (res.status < 200 || res.status > 299) {
      const text = res.bytes.toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      const headers = new Headers();
      for (const k in res.headers) {
        const v = res.headers[k];
        if (Array.isArray(v)) for (const x of v) headers.append(k, x);
        else if (v !== undefined) headers.set(k, v);
      }
      throw APIError.generate(res.status, json as object | undefined, json ? undefined : text, headers);
    }
    if (res.status === 204) return null;
    const mediaType = res.headers['content-type']?.split(';')[0]?.trim();
    if (mediaType !== undefined && (mediaType.includes('application/json') || mediaType.endsWith('+json'))) {
      if (res.headers['content-length'] === '0') return undefined;
      return JSON.parse(res.bytes.toString('utf8'));
    }
    return res.bytes.toString('utf8');
  }

  /** Per endpoint object (one per activity input): resolved once, not per request. */
  private context(endpointName: string, endpoint: EndpointSpec): EndpointContext {
    let ctx = this.contexts.get(endpoint);
    if (!ctx || ctx.name !== endpointName) {
      ctx = {
        name: endpointName,
        ident: endpointIdentity(endpointName, endpoint),
        entry: this.clientEntry(endpointName, endpoint),
        limiter: this.limiter(endpoint),
        limKey: limiterKey(endpoint),
      };
      this.contexts.set(endpoint, ctx);
    }
    return ctx;
  }

  /**
   * Slots for results not yet durable, per endpoint: a request takes one before it is sent and
   * gives it back once its row is written. So a worker that dies mid-batch leaves at most
   * `concurrency` requests sent but unrecorded, which is all a retry sends again.
   */
  unwrittenSlots(endpoint: EndpointSpec): Semaphore {
    const id = limiterKey(endpoint);
    let slots = this.unwritten.get(id);
    if (!slots) {
      slots = new Semaphore(endpoint.concurrency);
      this.unwritten.set(id, slots);
    } else {
      slots.setLimit(endpoint.concurrency);
    }
    return slots;
  }

  limiter(endpoint: EndpointSpec): EndpointLimiter {
    const id = limiterKey(endpoint);
    const limits = { concurrency: endpoint.concurrency, rpm: endpoint.rpm, tpm: endpoint.tpm };
    let limiter = this.limiters.get(id);
    if (!limiter) {
      limiter = new EndpointLimiter(limits);
      this.limiters.set(id, limiter);
    } else {
      limiter.configure(limits);
    }
    return limiter;
  }

  /**
   * Runs one request to completion: waits for the endpoint's limits, retries transient faults
   * (bounded by `max_attempts`), and resolves with the output or the item's failure. Rejects only
   * with `EndpointFatalError` (stop the activity) or `InferenceAbortedError` (`group` aborted).
   * An identical request (same key) already in flight in this process is awaited, not sent again.
   */
  complete(call: CompletionCall, group?: CallGroup): Promise<CompletionResult> {
    if (group?.aborted) return Promise.reject(new InferenceAbortedError('aborted'));
    const done = this.recent.get(call.key);
    if (done) return Promise.resolve({ ok: true, output: done, attempts: 0, sent: 0, shared: true });
    let job = this.inflight.get(call.key);
    const leader = !job;
    if (!job) {
      const created: Job = {
        controller: new AbortController(),
        waiters: 0,
        settled: false,
        promise: undefined as unknown as Promise<CompletionResult>,
        forget: () => {
          if (this.inflight.get(call.key) === created) this.inflight.delete(call.key);
        },
      };
      created.promise = this.run(call, created);
      this.inflight.set(call.key, created);
      job = created;
    }
    const shared = job;
    shared.waiters++;
    return new Promise<CompletionResult>((resolve, reject) => {
      const waiter: GroupWaiter = { job: shared, reject };
      group?.waiters.add(waiter);
      shared.promise.then(
        (result) => {
          if (group && !group.waiters.delete(waiter)) return;
          shared.waiters--;
          resolve(leader ? result : { ...result, attempts: 0, sent: 0, shared: true });
        },
        (err: unknown) => {
          if (group && !group.waiters.delete(waiter)) return;
          shared.waiters--;
          reject(err);
        },
      );
    });
  }

  private async run(call: CompletionCall, job: Job): Promise<CompletionResult> {
    try {
      const result = await this.send(call, job.controller.signal);
      if (result.ok) this.remember(call.key, result.output);
      return result;
    } finally {
      job.settled = true;
      job.forget();
    }
  }

  /**
   * Outputs that just completed, so an identical request arriving after its twin finished (but
   * before the Postgres cache was consulted again) is not sent twice. Bounded, oldest out first.
   */
  private remember(key: string, output: InferenceOutput): void {
    this.recent.set(key, output);
    if (this.recent.size > RECENT_OUTPUTS) this.recent.delete(this.recent.keys().next().value!);
  }

  /** The endpoint answered (any HTTP response, even an error): it is not down. */
  markAnswered(endpoint: EndpointSpec): void {
    this.silence.delete(limiterKey(endpoint));
  }

  /**
   * Notes a failure that got no answer at all (connection refused or reset, timeout); returns since
   * when the endpoint has been silent. A silence whose latest failure is older than `staleMs` (no
   * request tried in between) starts over: it says nothing about the server now.
   */
  private noteSilence(limKey: string, now: number, staleMs: number): number {
    let s = this.silence.get(limKey);
    if (!s || now - s.last > staleMs) {
      s = { since: now, last: now };
      this.silence.set(limKey, s);
    }
    s.last = now;
    return s.since;
  }

  private backoff(attempt: number): number {
    const ceiling = Math.min(this.backoffMax, this.backoffBase * 2 ** (attempt - 1));
    return Math.round(ceiling * (0.5 + Math.random() * 0.5));
  }

  private async send(call: CompletionCall, signal: AbortSignal): Promise<CompletionResult> {
    const { endpoint } = call;
    const { ident, entry, limiter, limKey } = this.context(call.endpointName, endpoint);
    const tokens = estimateTokens(call.request);
    const params = { ...call.request.params };
    if (typeof params.seed === 'number') params.seed = sampleSeed(params.seed, call.sampleIndex);
    const body = { ...params, model: endpoint.model, messages: call.request.messages.map((m) => toWireMessage(m, call.images)) };
    const capMs = endpoint.max_retry_after_s * 1000;
    const downAfterMs = (endpoint.down_after_s ?? DEFAULT_DOWN_AFTER_S) * 1000;
    // Longer than any gap between two failures of a request that keeps retrying.
    const staleMs = downAfterMs + this.backoffMax + endpoint.timeout_s * 1000;
    /** When this request first failed with no answer (connection error or timeout). */
    let firstSilentAt: number | undefined;

    let sent = 0;
    for (let attempt = 1; ; attempt++) {
      const waiting = limiter.acquire(tokens, signal);
      if (waiting) await waiting;
      const startedAt = Date.now();
      let failure: InferenceItemError | InferenceTransientError | EndpointFatalError | InferenceAbortedError;
      try {
        sent++;
        this.sentByEndpoint.set(limKey, (this.sentByEndpoint.get(limKey) ?? 0) + 1);
        const raw: unknown = await this.chatCompletion(entry, body, signal);
        const parsed = parseCompletion(raw);
        const endedAt = Date.now();
        this.silence.delete(limKey);
        this.onAttempt?.({ key: call.key, endpoint: limKey, attempt, startedAt, endedAt, outcome: 'ok', status: 200 });
        return { ok: true, output: { ...parsed, latencyMs: endedAt - startedAt }, attempts: attempt, sent, shared: false };
      } catch (err) {
        failure = classifyInferenceError(err, ident);
        if (failure instanceof InferenceTransientError && failure.kind === 'timeout') {
          failure = new InferenceTransientError('timeout', `timeout (no response in ${endpoint.timeout_s} s)`, undefined, undefined, { cause: err });
        }
      } finally {
        limiter.release();
      }
      const endedAt = Date.now();
      if (failure instanceof InferenceAbortedError || signal.aborted)
        throw failure instanceof InferenceAbortedError ? failure : new InferenceAbortedError('request aborted', { cause: failure });
      if (failure instanceof EndpointFatalError) {
        this.onAttempt?.({ key: call.key, endpoint: limKey, attempt, startedAt, endedAt, outcome: failure.type });
        throw failure;
      }
      if (failure instanceof InferenceItemError) {
        this.silence.delete(limKey);
        this.onAttempt?.({ key: call.key, endpoint: limKey, attempt, startedAt, endedAt, outcome: failure.kind, status: failure.status });
        return { ok: false, errorClass: `item:${failure.kind}`, error: storableText(failure.message), attempts: attempt, sent, shared: false };
      }
      // Nothing answered: the endpoint may be down. Any response (429, 5xx, a malformed body) says it is not.
      const unanswered = failure.kind === 'connection' || failure.kind === 'timeout';
      let silentSince: number | undefined;
      if (unanswered) {
        firstSilentAt ??= endedAt;
        silentSince = this.noteSilence(limKey, endedAt, staleMs);
        if (endedAt - silentSince >= downAfterMs) {
          this.onAttempt?.({ key: call.key, endpoint: limKey, attempt, startedAt, endedAt, outcome: failure.kind, status: failure.status });
          throw new EndpointFatalError(
            'EndpointDownError',
            `endpoint "${ident.name}": nothing answers at ${ident.baseUrl} for ${Math.round((endedAt - silentSince) / 1000)} s (${failure.message}; down_after_s ${downAfterMs / 1000}); ` +
              'the stage stopped. Start the server (or fix base_url) and launch the same command again: answered requests are kept, the others are sent',
            { cause: failure },
          );
        }
      } else {
        this.silence.delete(limKey);
      }
      let waitMs: number;
      if (failure.kind === 'rate_limited') {
        waitMs = Math.min(capMs, failure.retryAfterMs ?? this.backoff(attempt));
        // The server is saturated: nothing of this endpoint starts before the wait is over.
        limiter.pause(waitMs);
      } else {
        waitMs = failure.retryAfterMs !== undefined ? Math.min(capMs, failure.retryAfterMs) : this.backoff(attempt);
      }
      this.onAttempt?.({ key: call.key, endpoint: limKey, attempt, startedAt, endedAt, outcome: failure.kind, status: failure.status, waitMs });
      // While the endpoint has stayed silent since this request first failed, the fault is the
      // endpoint's, not the item's: keep trying until it answers or `down_after_s` declares it down.
      const endpointSilent = silentSince !== undefined && firstSilentAt !== undefined && silentSince <= firstSilentAt;
      if (attempt >= endpoint.max_attempts && !endpointSilent) {
        const error = storableText(`transient: ${failure.message} after ${attempt} attempts`);
        return { ok: false, errorClass: `transient:${failure.kind}`, error, attempts: attempt, sent, shared: false };
      }
      await sleep(waitMs, signal);
    }
  }
}
