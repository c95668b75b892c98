import { condition, patched, proxyActivities } from '@temporalio/workflow';
import type { EvaluateActivities, RequestRange } from '../../activities/stages/evaluate.js';
import type { EvaluateParams } from '../../spec/kinds/evaluate.js';
import { resolveDataRef, servedEndpoint } from '../artifacts.js';
import { chunkSizeFor, runInference } from '../inference.js';
import { reportProgress } from '../progress.js';
import type { StageInput, StageOutput } from '../types.js';

const acts = proxyActivities<EvaluateActivities>({
  startToCloseTimeout: '1 hour',
  // The activities heartbeat while they run (activities/heartbeat.ts): a killed worker's step is
  // retried on another worker after this, not after the hour.
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute', maximumAttempts: 10, nonRetryableErrorTypes: ['DatasetError', 'MetricsInputError'] },
});

/**
 * The `evaluate` stage. Items are cut into chunks of about `chunk_size` requests, and three lanes
 * run side by side: requests are written a few chunks ahead of inference; `parallel` chunks are
 * in inference at once (so the endpoint's limiter never drains between chunks); a chunk's outputs
 * are parsed into judgments as soon as its inference ends. Metrics come last, over every judgment.
 */
export async function evaluateStage(input: StageInput<EvaluateParams>): Promise<StageOutput> {
  const { runId, stageId, params, seed } = input;
  // A served model (`judge: { from: <serve stage> }`) is an endpoint built from that stage's output.
  const endpointName = typeof params.judge === 'string' ? params.judge : params.judge.from;
  const endpoint = typeof params.judge === 'string' ? input.endpoints[params.judge]! : servedEndpoint(input, params.judge.from);
  const { datasetId, items, maxCandidates } = await acts.importEvaluationDataset(resolveDataRef(input, params.dataset, 'mc-items'));

  // Requests per item: views x samples, where swap shows K orders and the other modes one. (Runs
  // begun before this was known keep sizing chunks for 2 views, so their histories replay.)
  const viewsPerItem = patched('evaluate-chunks-by-views') && maxCandidates !== undefined ? (params.positions === 'swap' ? maxCandidates : 1) : 2;
  const wantedItems = Math.max(1, Math.floor(params.chunk_size / (viewsPerItem * params.samples)));
  const itemsPerChunk = patched('evaluate-max-chunks') ? chunkSizeFor(items, wantedItems) : wantedItems;
  const chunks: [number, number][] = [];
  for (let a = 0; a < items; a += itemsPerChunk) chunks.push([a, Math.min(items, a + itemsPerChunk)]);

  const totals = { total: 0, done: 0, failed: 0 };
  const estimatedTotal = items * viewsPerItem * params.samples;
  const report = () => reportProgress({ stageId, done: totals.done, failed: totals.failed, total: Math.max(totals.total, estimatedTotal) });

  // Lane 1: write requests, at most `lookahead` chunks ahead of inference.
  const lookahead = params.parallel + 1;
  const ranges: (RequestRange | undefined)[] = [];
  let inferenceStarted = 0;
  let prepareError: unknown;
  void (async () => {
    for (let i = 0; i < chunks.length; i++) {
      await condition(() => i < inferenceStarted + lookahead);
      const [fromIdx, toIdx] = chunks[i]!;
      ranges[i] = await acts.prepareEvaluationChunk({ runId, stageId, seed, params, datasetId, fromIdx, toIdx, endpoint });
      totals.total += ranges[i]!.count;
    }
  })().catch((err: unknown) => (prepareError = err));

  // Lane 2: inference, `parallel` chunks at once; lane 3: judging, started as each chunk ends.
  const judging: Promise<unknown>[] = [];
  const infer = async (i: number): Promise<void> => {
    await condition(() => ranges[i] !== undefined || prepareError !== undefined);
    if (prepareError !== undefined) throw prepareError;
    const range = ranges[i]!;
    if (range.count > 0) {
      const out = await runInference({
        runId,
        stageId,
        endpointName,
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
    const [fromIdx, toIdx] = chunks[i]!;
    judging.push(acts.judgeEvaluationChunk({ runId, stageId, seed, params, datasetId, fromIdx, toIdx }).then(report));
  };
  const inflight = new Map<number, Promise<number>>();
  while (inferenceStarted < chunks.length || inflight.size > 0) {
    while (inflight.size < params.parallel && inferenceStarted < chunks.length) {
      const i = inferenceStarted++;
      inflight.set(
        i,
        infer(i).then(() => i),
      );
    }
    inflight.delete(await Promise.race(inflight.values()));
  }
  await Promise.all(judging);

  const scored = await acts.computeEvaluationMetrics({ runId, stageId, datasetId, seed, params, price: endpoint.price });
  return {
    ref: { datasetId, items, judgments: scored.judgments, accuracy: scored.accuracy, macroAccuracy: scored.macroAccuracy },
    items: { total: totals.total, done: totals.done, failed: totals.failed },
  };
}
