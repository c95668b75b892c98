/**
 * Inference error classes and the one place that maps a failed call to them.
 *
 * - `InferenceItemError`: this item cannot succeed (400, non-model 404, 413, 422, context length):
 *   the row fails with its reason, no retry.
 * - `InferenceTransientError`: 429, 408/409, 5xx, timeouts, connection errors, malformed 200 bodies:
 *   the gateway retries the item (bounded by `max_attempts`), honouring retry-after on 429.
 * - `EndpointFatalError`: the endpoint cannot serve this run (401/403, model not served, missing key
 *   env var, nothing listening): the activity stops with a non-retryable ApplicationFailure.
 */
import { ApplicationFailure } from '@temporalio/common';
import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import type { EndpointFatalErrorType } from './types.js';

export type ItemErrorKind = 'bad_request' | 'context_length' | 'not_found' | 'unprocessable' | 'client_error';
export type TransientErrorKind = 'rate_limited' | 'server_error' | 'timeout' | 'connection' | 'malformed_response';

export class InferenceItemError extends Error {
  override readonly name = 'InferenceItemError';
  constructor(
    readonly kind: ItemErrorKind,
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class InferenceTransientError extends Error {
  override readonly name = 'InferenceTransientError';
  constructor(
    readonly kind: TransientErrorKind,
    message: string,
    readonly status?: number,
    /** Server-requested wait (retry-after / retry-after-ms), uncapped. */
    readonly retryAfterMs?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class EndpointFatalError extends Error {
  override readonly name = 'EndpointFatalError';
  constructor(
    /** The ApplicationFailure type the activity fails with. */
    readonly type: EndpointFatalErrorType,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The request was aborted because the activity was cancelled or stopped: nothing to record. */
export class InferenceAbortedError extends Error {
  override readonly name = 'InferenceAbortedError';
}

/** What the error messages may say about the endpoint (never the key). */
export interface EndpointIdentity {
  name: string;
  baseUrl: string;
  model: string;
  apiKeyEnv?: string;
}

/** Parses retry-after-ms (milliseconds) or retry-after (seconds or an HTTP date). */
export function retryAfterMs(headers: Headers | undefined, now = Date.now()): number | undefined {
  if (!headers) return undefined;
  const ms = headers.get('retry-after-ms');
  if (ms !== null && ms.trim() !== '' && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const ra = headers.get('retry-after');
  if (ra === null || ra.trim() === '') return undefined;
  if (Number.isFinite(Number(ra))) return Math.max(0, Number(ra) * 1000);
  const date = Date.parse(ra);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function serverMessage(err: APIError): string {
  const body = err.error as { message?: unknown } | undefined;
  const text = typeof body?.message === 'string' ? body.message : err.message;
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}

const CONTEXT_LENGTH = /context[_ ]length|maximum context|too many tokens|prompt is too long|exceeds? the (model'?s? )?(maximum|max)/i;

function isModelNotFound(err: APIError, model: string): boolean {
  if (err.code === 'model_not_found') return true;
  const msg = serverMessage(err);
  return /model/i.test(msg) && (msg.includes(model) || /does not exist|not found|unknown/i.test(msg));
}

/** Node's fetch hides the socket error code in the cause chain (TypeError → Error { code }). */
export function networkErrorCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; e && depth < 6; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z_]+$|^UND_ERR/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Maps anything a chat completion call threw to one of the error classes. An error that is none of
 * the known kinds is a bug and is rethrown as is.
 */
export function classifyInferenceError(
  err: unknown,
  ep: EndpointIdentity,
): InferenceItemError | InferenceTransientError | EndpointFatalError | InferenceAbortedError {
  if (err instanceof InferenceItemError || err instanceof InferenceTransientError || err instanceof EndpointFatalError || err instanceof InferenceAbortedError)
    return err;
  if (err instanceof APIUserAbortError) return new InferenceAbortedError('request aborted', { cause: err });
  if (err instanceof APIConnectionTimeoutError)
    return new InferenceTransientError('timeout', 'timeout: no response in time', undefined, undefined, { cause: err });
  if (err instanceof APIConnectionError) {
    const code = networkErrorCode(err);
    return new InferenceTransientError('connection', `connection error${code ? ` (${code})` : ''}`, undefined, undefined, { cause: err });
  }
  if (err instanceof APIError) {
    const status = err.status;
    if (status === undefined) return new InferenceTransientError('connection', `connection error: ${err.message}`, undefined, undefined, { cause: err });
    const redirect = redirectError(ep.name, ep.baseUrl, err);
    if (redirect) return redirect;
    const where = `endpoint "${ep.name}" (${ep.baseUrl})`;
    if (status === 401 || status === 403) {
      const hint = ep.apiKeyEnv ? `check the env var ${ep.apiKeyEnv}` : 'the endpoint needs a key: set api_key_env to the env var holding it';
      return new EndpointFatalError('EndpointAuthError', `${where}: the API key was rejected (${status}); ${hint}`, { cause: err });
    }
    if (status === 404 && isModelNotFound(err, ep.model)) {
      return new EndpointFatalError(
        'EndpointModelNotFoundError',
        `endpoint "${ep.name}": model "${ep.model}" is not served at ${ep.baseUrl} (${serverMessage(err)})`,
        { cause: err },
      );
    }
    if (status === 429) return new InferenceTransientError('rate_limited', 'rate limited (HTTP 429)', 429, retryAfterMs(err.headers), { cause: err });
    if (status === 408 || status === 409 || status >= 500) {
      return new InferenceTransientError('server_error', `HTTP ${status}`, status, retryAfterMs(err.headers), { cause: err });
    }
    const msg = serverMessage(err);
    if ((status === 400 || status === 413 || status === 422) && (CONTEXT_LENGTH.test(msg) || err.code === 'context_length_exceeded')) {
      return new InferenceItemError('context_length', `context length exceeded (HTTP ${status}): ${msg}`, status, { cause: err });
    }
    const kind: ItemErrorKind = status === 400 ? 'bad_request' : status === 404 ? 'not_found' : status === 422 ? 'unprocessable' : 'client_error';
    return new InferenceItemError(kind, `HTTP ${status}: ${msg}`, status, { cause: err });
  }
  if (err instanceof SyntaxError)
    return new InferenceTransientError('malformed_response', `malformed response body (${err.message})`, 200, undefined, { cause: err });
  // undici reports a connection dropped mid-body as TypeError('terminated'), outside the client's wrapping.
  if (err instanceof TypeError && (err.message === 'terminated' || err.message === 'fetch failed' || networkErrorCode(err))) {
    return new InferenceTransientError('connection', `connection error (${networkErrorCode(err) ?? err.message})`, undefined, undefined, { cause: err });
  }
  if (err instanceof Error && err.name === 'AbortError') return new InferenceAbortedError('request aborted', { cause: err });
  throw err;
}

/**
 * A 3xx from an API endpoint: the gateway does not follow redirects (a POST redirected by 301/302
 * would arrive as a GET, and every request would cost two round trips), so the run stops at once
 * and names the URL to use instead.
 */
export function redirectError(name: string, baseUrl: string, err: APIError): EndpointFatalError | undefined {
  if (err.status === undefined || err.status < 300 || err.status > 399) return undefined;
  const location = err.headers?.get('location');
  return new EndpointFatalError(
    'EndpointConfigError',
    `endpoint "${name}": ${baseUrl} answered ${err.status}, redirecting to ${location ?? '(no location)'}; set base_url to the URL the server wants`,
    { cause: err },
  );
}

/** The activity failure for an endpoint-fatal error: non-retryable, typed, the message kept. */
export function toApplicationFailure(err: EndpointFatalError): ApplicationFailure {
  return ApplicationFailure.create({ type: err.type, message: err.message, nonRetryable: true });
}

/**
 * How an activity that met an endpoint-fatal error fails: a served model's server that went away
 * is started again elsewhere by its serve stage, so that one is retried (the retry reads the new
 * URL); every other endpoint-fatal error ends the stage.
 */
export function endpointFailure(fatal: EndpointFatalError, endpoint: { served?: unknown }): ApplicationFailure {
  if (endpoint.served && (fatal.type === 'EndpointDownError' || fatal.type === 'EndpointUnreachableError')) {
    return ApplicationFailure.create({ type: 'ServedEndpointRestarting', message: fatal.message, nonRetryable: false });
  }
  return toApplicationFailure(fatal);
}
