import { proxyActivities } from '@temporalio/workflow';
import type { EvaluateActivities, RequestRange } from '../../activities/stages/evaluate.js';
import type { EvaluateParams } from '../../spec/kinds/evaluate.js';
import { runInference } from '../inference.js';
import { reportProgress } from '../progress.js';
import type { StageInput, StageOutput } from '../types.js';

const acts = proxyActivities<EvaluateActivities>({
  startToCloseTimeout: '1 hour',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute', maximumAttempts: 10, nonRetryableErrorTypes: ['DatasetError', 'MetricsInputError'] },
});

/**
 * The `evaluate` stage. Items are cut into chunks of about `chunk_size` requests; each chunk runs
 * prepare → inference → judge, and `parallel` chunks are in flight at once, so writing the next
 * chunk's requests and parsing the last one's outputs overlap with inference instead of adding
 * to it. Metrics come last, over every judgment of the stage.
 */
export async function evaluateStage(input: StageInput<EvaluateParams>): Promise<StageOutput> {
  const { runId, stageId, params, seed } = input;
  const endpoint = input.endpoints[params.judge]!;
  const { datasetId, items } = await acts.importEvaluationDataset({ dataset: input.datasets[params.dataset]! });

  // Requests per item is views x samples; views are at most K, and K is small: 2 for VL-RewardBench.
  const itemsPerChunk = Math.max(1, Math.floor(params.chunk_size / (2 * params.samples)));
  const chunks: [number, number][] = [];
  for (let a = 0; a < items; a += itemsPerChunk) chunks.push([a, Math.min(items, a + itemsPerChunk)]);

  const totals = { total: 0, done: 0, failed: 0 };
  const estimatedTotal = items * 2 * params.samples;
  const report = () => reportProgress({ stageId, done: totals.done, failed: totals.failed, total: Math.max(totals.total, estimatedTotal) });

  const runChunk = async ([fromIdx, toIdx]: [number, number]): Promise<void> => {
    const range: RequestRange = await acts.prepareEvaluationChunk({ runId, stageId, seed, params, datasetId, fromIdx, toIdx, endpoint });
    totals.total += range.count;
    if (range.count > 0) {
      const out = await runInference({
        runId,
        stageId,
        endpointName: params.judge,
        endpoint,
        fromId: range.fromId,
        toId: range.toId,
        total: range.count,
        chunkSize: range.count,
        parallel: 1,
        taskQueue: input.taskQueue,
      });
      totals.done += out.succeeded + out.failed;
      totals.failed += out.failed;
    }
    await acts.judgeEvaluationChunk({ runId, stageId, seed, params, datasetId, fromIdx, toIdx });
    await report();
  };

  // A sliding window of chunk pipelines.
  let next = 0;
  const inflight = new Map<number, Promise<number>>();
  while (next < chunks.length || inflight.size > 0) {
    while (inflight.size < params.parallel && next < chunks.length) {
      const i = next++;
      inflight.set(i, runChunk(chunks[i]!).then(() => i));
    }
    inflight.delete(await Promise.race(inflight.values()));
  }

  const scored = await acts.computeEvaluationMetrics({ runId, stageId, datasetId, seed, params, price: endpoint.price });
  return {
    ref: { datasetId, items, judgments: scored.judgments, accuracy: scored.accuracy, macroAccuracy: scored.macroAccuracy },
    items: { total: totals.total, done: totals.done, failed: totals.failed },
  };
}
