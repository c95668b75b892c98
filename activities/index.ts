import type { Db } from '../db/client.js';
import { createInferenceActivities } from './inference/index.js';
import type { InferenceGateway } from './inference/gateway.js';
import { createRecordActivities } from './records.js';
import { createReuseActivities } from './reuse.js';
import { createEvaluateActivities } from './stages/evaluate.js';
import { createSynthesizeActivities } from './stages/synthesize.js';

export interface ActivityDeps {
  db: Db;
  gateway: InferenceGateway;
}

/** Every activity the worker registers, built over injected dependencies (tests pass their own). */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createRecordActivities(deps),
    ...createReuseActivities(deps),
    ...createInferenceActivities(deps),
    ...createEvaluateActivities(deps),
    ...createSynthesizeActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
