import { createHash } from 'node:crypto';
import type { EndpointSpec } from '../../spec/endpoint.js';
import type { PreparedRequest } from './types.js';

/**
 * Canonical JSON: object keys sorted, `undefined` members dropped (as JSON.stringify drops them),
 * arrays kept in order. Two values that mean the same request serialize to the same text.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((v) => (v === undefined ? null : sortKeys(v)));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = sortKeys(v);
    }
    return out;
  }
  return value;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

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
  return sha256Hex(canonicalJson({ endpoint: fingerprint, messages: request.messages, params: request.params, sample: sampleIndex }));
}
