import { canonicalJson, sha256Hex } from '../../spec/canonical.js';
import type { EndpointSpec } from '../../spec/endpoint.js';
import type { PreparedRequest } from './types.js';

export { canonicalJson, sha256Hex };

function normalizedBaseUrl(baseUrl: string): string {
  return baseUrl.replace(/\/+$/, '');
}

/**
 * Identity of the weights behind an endpoint: base URL, served model id and revision. Two specs
 * naming the same server and model share cache entries, whatever the endpoint is called.
 */
export function endpointFingerprint(endpoint: Pick<EndpointSpec, 'base_url' | 'model' | 'revision'>): string {
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
  return cacheKeyOfSample(cacheKeyPrefix(fingerprint, request), sampleIndex);
}

/**
 * The part of the cache key's canonical JSON that the samples of one request share, so k samples
 * serialize the request once. (`sample` sorts last among the keys, so the canonical JSON of the
 * whole object is this prefix, the sample index and the closing brace.)
 */
export function cacheKeyPrefix(fingerprint: string, request: PreparedRequest): string {
  const shared = canonicalJson({ endpoint: fingerprint, messages: request.messages, params: request.params });
  return `${shared.slice(0, -1)},"sample":`;
}

export function cacheKeyOfSample(prefix: string, sampleIndex: number): string {
  return sha256Hex(`${prefix}${JSON.stringify(sampleIndex)}}`);
}

/** Content address of a request body (messages and params) in `request_bodies`. */
export function requestBodyHash(request: PreparedRequest): string {
  return sha256Hex(canonicalJson({ messages: request.messages, params: request.params }));
}
