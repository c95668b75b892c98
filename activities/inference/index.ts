/**
 * The inference gateway's activities and the helpers stages use.
 *
 * Activities (registered on the worker): `executeRequests`, `checkEndpoints`.
 * Helpers (called from stage activities): `prepareRequests`, `requestIdRange`, `storeImage`,
 * `loadResults`, `stageUsage`.
 */
import type { Db } from '../../db/client.js';
import { checkEndpoints } from './check.js';
import { executeRequests } from './execute.js';
import type { InferenceGateway } from './gateway.js';
import type { CheckEndpointsInput, ExecuteRequestsInput, InferenceActivities } from './types.js';

export interface InferenceActivityDeps {
  db: Db;
  /** One per worker process (built in worker.ts): limits and in-flight collapsing span all activities. */
  gateway: InferenceGateway;
}

export function createInferenceActivities(deps: InferenceActivityDeps): InferenceActivities {
  return {
    executeRequests: (input: ExecuteRequestsInput) => executeRequests(deps, input),
    checkEndpoints: (input: CheckEndpointsInput) => checkEndpoints(deps, input),
  };
}

export { InferenceGateway, type InferenceGatewayOptions, type InferenceOutput, type AttemptEvent } from './gateway.js';
export { prepareRequests, requestIdRange, storeImage, stageUsage, loadResults, type StageUsage, type RequestResult } from './store.js';
export { canonicalJson, cacheKey, endpointFingerprint, sha256Hex } from './cache-key.js';
export { EndpointFatalError, InferenceItemError, InferenceTransientError, InferenceAbortedError } from './errors.js';
export * from './types.js';
