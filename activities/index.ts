import type { Db } from '../db/client.js';
import { keepAlive } from './heartbeat.js';
import { createInferenceActivities } from './inference/index.js';
import type { InferenceGateway } from './inference/gateway.js';
import { createRecordActivities } from './records.js';
import { createReuseActivities } from './reuse.js';
import { createEvaluateActivities } from './stages/evaluate.js';
import { createSweepActivities } from './stages/sweep.js';
import { createSynthesizeActivities } from './stages/synthesize.js';
import { createDistillActivities } from './stages/distill.js';
import { createTrainActivities, type TrainDeps } from './stages/train.js';
import { createServeActivities, type ServeDeps } from './stages/serve.js';

export interface ActivityDeps {
  db: Db;
  gateway: InferenceGateway;
  /** train: state folder, sft-set exporter and backends (defaults: JUDGEFLOW_STATE_DIR, ./train/). */
  train?: Omit<TrainDeps, 'db'>;
  /** serve: state folder (server logs) and how often a server checks whether it is still needed. */
  serve?: Omit<ServeDeps, 'db'>;
}

/** Every activity the worker registers, built over injected dependencies (tests pass their own). */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createRecordActivities(deps),
    ...createReuseActivities(deps),
    ...createInferenceActivities(deps),
    // Heartbeating, so a killed worker's import/prepare/judge/metrics step is retried elsewhere fast.
    ...keepAlive(createEvaluateActivities(deps)),
    ...createSynthesizeActivities(deps),
    ...createSweepActivities(deps),
    ...createDistillActivities(deps),
    ...createTrainActivities({ ...deps.train, db: deps.db }),
    ...createServeActivities({ ...deps.serve, db: deps.db }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
