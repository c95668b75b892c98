import { proxyActivities } from '@temporalio/workflow';
import type { EvaluateActivities } from '../../activities/stages/evaluate.js';
import type { EvaluateParams } from '../../spec/kinds/evaluate.js';
import { runInference } from '../inference.js';
import { reportProgress } from '../progress.js';
import type { StageInput, StageOutput } from '../types.js';

const acts = proxyActivities<EvaluateActivities>({
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute', maximumAttempts: 10, nonRetryableErrorTypes: ['DatasetError', 'MetricsInputError'] },
});

/** The `evaluate` stage: prepare judge requests → run them through the gateway → score. */
export async function evaluateStage(input: StageInput<EvaluateParams>): Promise<StageOutput> {
  const { runId, stageId, params } = input;
  const endpoint = input.endpoints[params.judge]!;
  const prep = await acts.prepareEvaluation({
    runId,
    stageId,
    seed: input.seed,
    params,
    dataset: input.datasets[params.dataset]!,
    endpoint,
  });
  await reportProgress({ stageId, done: 0, total: prep.requests, failed: 0 });
  const inference = await runInference({
    runId,
    stageId,
    endpointName: params.judge,
    endpoint,
    fromId: prep.fromId,
    toId: prep.toId,
    total: prep.requests,
    chunkSize: params.chunk_size,
    parallel: params.parallel,
    taskQueue: input.taskQueue,
    onProgress: (p) => reportProgress({ stageId, ...p }),
  });
  const scored = await acts.scoreEvaluation({ runId, stageId, datasetId: prep.datasetId, seed: input.seed, params, price: endpoint.price });
  return {
    ref: { datasetId: prep.datasetId, items: prep.items, judgments: scored.judgments, accuracy: scored.accuracy, macroAccuracy: scored.macroAccuracy },
    items: { total: prep.requests, done: inference.succeeded + inference.failed, failed: inference.failed },
  };
}
