/**
 * Inputs, outputs and request shapes of the inference gateway. Workflow-safe: types and plain
 * constants only (no imports with side effects), so `workflows/` may import this module.
 * Add fields, never repurpose them: running histories must keep decoding.
 */
import type { EndpointSpec } from '../../spec/endpoint.js';

export type { EndpointSpec };

/** A content part of a prepared message. Images are references to `blobs` rows, never bytes. */
export type PreparedContentPart = { type: 'text'; text: string } | { type: 'image_ref'; hash: string; mime: string };

export interface PreparedMessage {
  role: 'system' | 'user' | 'assistant' | 'developer';
  content: string | PreparedContentPart[];
}

/**
 * Sampling parameters sent with the request body. Known fields are typed; any other field
 * (e.g. `reasoning_effort`, `response_format`) passes through unchanged and is part of the cache key.
 *
 * `seed`: when set, the gateway sends `seed + sampleIndex`, so the samples of one item differ
 * while every sample stays reproducible (sample 0 sends the seed unchanged).
 * `n` must be 1 (or absent): draw several samples with distinct `sampleIndex` rows instead.
 */
export interface SamplingParams {
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
  stop?: string | string[];
  n?: number;
  seed?: number;
  [extra: string]: unknown;
}

export interface PreparedRequest {
  messages: PreparedMessage[];
  params: SamplingParams;
}

/** One row for `prepareRequests`. `endpoint` is the endpoint's name in the spec. */
export interface PrepareRequestRow {
  runId: string;
  stageId: string;
  itemKey: string;
  endpoint: string;
  sampleIndex: number;
  request: PreparedRequest;
}

export interface ExecuteRequestsInput {
  runId: string;
  stageId: string;
  endpointName: string;
  endpoint: EndpointSpec;
  /** Inclusive id range of `inference_requests` rows. */
  fromId: number;
  toId: number;
}

/**
 * Counts describe the rows of the range (this stage and endpoint) when the activity ends,
 * including rows finished by an earlier attempt or execution; `sent`, `promptTokens` and
 * `completionTokens` are what this attempt sent and was billed for (cache hits are free).
 */
export interface ExecuteRequestsOutput {
  succeeded: number;
  failed: number;
  /** Succeeded rows served from the cache (or from an identical request in flight). */
  cached: number;
  /** HTTP requests this attempt actually sent (retries included). */
  sent: number;
  promptTokens: number;
  completionTokens: number;
}

export interface CheckEndpointsInput {
  endpoints: Record<string, EndpointSpec>;
}

export interface CheckEndpointsOutput {
  ok: true;
  /** Models each endpoint serves, by endpoint name. */
  models: Record<string, string[]>;
}

/** Heartbeat details of `executeRequests`: every row of the range with id <= cursor is finished. */
export interface ExecuteRequestsProgress {
  cursor: number;
}

/** The activities `createInferenceActivities` returns, as workflows see them. */
export interface InferenceActivities {
  executeRequests(input: ExecuteRequestsInput): Promise<ExecuteRequestsOutput>;
  checkEndpoints(input: CheckEndpointsInput): Promise<CheckEndpointsOutput>;
}

/**
 * `ApplicationFailure` types the inference activities throw as non-retryable: the endpoint cannot
 * serve this run (bad key, unknown model, nothing listening, key env var missing, nothing answered
 * mid-run for the endpoint's `down_after_s`).
 */
export const ENDPOINT_FATAL_ERROR_TYPES = [
  'EndpointAuthError',
  'EndpointModelNotFoundError',
  'EndpointUnreachableError',
  'EndpointConfigError',
  'EndpointDownError',
] as const;
export type EndpointFatalErrorType = (typeof ENDPOINT_FATAL_ERROR_TYPES)[number];
