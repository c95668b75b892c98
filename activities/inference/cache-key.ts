import { canonicalJson, sha256Hex } from '../../spec/canonical.js';
import type { EndpointSpec } from '../../spec/endpoint.js';
import type { PreparedRequest } from './types.js';

export { canonicalJson, sha256Hex };

function normalizedBaseUrl(baseUrl: string): string {
  return baseUrl.replace(/\/+$/, '');
}

/**
 * Identity of the weights behind an endpoint: base URL, served model id and revision. Two specs
 * naming the same server and model share cache entries, whatever the endpoint is called. A served
 * endpoint (a `serve` stage) keys on its weights' digest instead: its port changes between starts.
 */
export function endpointFingerprint(endpoint: Pick<EndpointSpec, 'base_url' | 'model' | 'revision' | 'served'>): string {
  if (endpoint.served)
    return sha256Hex(canonicalJson({ identity: endpoint.served.identity, model: endpoint.model, revision: endpoint.revision ?? '' })).slice(0, 32);
  return sha256Hex(canonicalJson({ base_url: normalizedBaseUrl(endpoint.base_url), model: endpoint.model, revision: endpoint.revision ?? '' })).slice(0, 32);
}

/** Requests to one server and model share one in-flight limit, whatever their revision label. */
export function limiterKey(endpoint: Pick<EndpointSpec, 'base_url' | 'model'>): string {
  return `${normalizedBaseUrl(endpoint.base_url)}#${endpoint.model}`;
}

/**
 * Content address of one completion: sha256 of canonical JSON of the endpoint fingerprint, the
 * messages (images stay `image_ref` parts, i.e. their hashes), the sampling params and the sample index.
 */
export function cacheKey(fingerprint: string, request: PreparedRequest, sampleIndex: number): string {
  return cacheKeyOfSample(cacheKeyPrefix(fingerprint, canonicalBody(request)), sampleIndex);
}

/** Canonical JSON of a request body (its messages and params): what `request_bodies` stores. */
export function canonicalBody(request: PreparedRequest): string {
  return canonicalJson({ messages: request.messages, params: request.params });
}

/** Content address of a request body in `request_bodies`: sha256 of its canonical JSON. */
export function requestBodyHash(body: string): string {
  return sha256Hex(body);
}

/**
 * The part of the cache key's canonical JSON that the samples of one request share, built from the
 * body's canonical JSON, so k samples serialize the request once. Keys sort `endpoint` < `messages`
 * < `params` < `sample`: the canonical JSON of the whole key object is `{"endpoint":…,` + the
 * body's members + `,"sample":N}`.
 */
export function cacheKeyPrefix(fingerprint: string, body: string): string {
  if (!body.startsWith('{"messages":')) throw new Error('cacheKeyPrefix: expected the canonical JSON of a request body (from canonicalBody)');
  return `{"endpoint":${JSON.stringify(fingerprint)},${body.slice(1, -1)},"sample":`;
}

export function cacheKeyOfSample(prefix: string, sampleIndex: number): string {
  return sha256Hex(`${prefix}${JSON.stringify(sampleIndex)}}`);
}
