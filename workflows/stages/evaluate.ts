import { condition, patched, proxyActivities, proxyLocalActivities, type ActivityOptions } from '@temporalio/workflow';
import type { EvaluateActivities, RequestRange } from '../../activities/stages/evaluate.js';
import type { EvaluateParams } from '../../spec/kinds/evaluate.js';
import { resolveDataRef, servedEndpoint } from '../artifacts.js';
import { MAX_CHUNKS, chunkSizeFor, runInference } from '../inference.js';
import { reportProgress } from '../progress.js';
import type { StageInput, StageOutput } from '../types.js';

const STEPS = {
  startToCloseTimeout: '1 hour',
  // The activities heartbeat while they run (activities/heartbeat.ts): a killed worker's step is
  // retried on another worker after this, not after the hour.
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute', maximumAttempts: 10, nonRetryableErrorTypes: ['DatasetError', 'MetricsInputError'] },
} as const satisfies ActivityOptions;
const acts = proxyActivities<EvaluateActivities>(STEPS);
// The requests of the chunks after the first are written ahead of their inference, off the path to
// the first request: through the task queue, not handed eagerly to this worker in the reply to the
// workflow task that also starts the first chunk's inference (which would then wait for this CPU).
// Which worker runs an activity changes no command of the history (no `patched()` needed).
const ahead = proxyActivities<EvaluateActivities>({ ...STEPS, allowEagerDispatch: false });
// Steps of a query or two run as local activities: in the worker running this workflow, within its
// workflow task, instead of a round trip through the server and a workflow task of their own.
const local = proxyLocalActivities<EvaluateActivities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute', maximumAttempts: 10, nonRetryableErrorTypes: ['DatasetError', 'MetricsInputError'] },
});

/** Requests a chunk must have for the first chunk to be cut to a quarter (16 or more requests). */
const SPLIT_FIRST_CHUNK_FROM = 64;

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
  // Sooner to the first request and from the last result ('evaluate-short-steps'): an artifact
  // imported at launch is resolved by a local activity, a large first chunk is cut to a quarter, and
  // the chunk whose inference ends last is judged and scored in one activity.
  const short = patched('evaluate-short-steps');
  const ref = resolveDataRef(input, params.dataset, 'mc-items');
  // (A plan from before artifacts names a file, whose import may take long: that stays an activity.)
  const { datasetId, items, maxCandidates } = await (short && ref.artifactId !== undefined ? local : acts).importEvaluationDataset(ref);

  // Requests per item: views x samples, where swap shows K orders and the other modes one. (Runs
  // begun before this was known keep sizing chunks for 2 views, so their histories replay.)
  const viewsPerItem = patched('evaluate-chunks-by-views') && maxCandidates !== undefined ? (params.positions === 'swap' ? maxCandidates : 1) : 2;
  const wantedItems = Math.max(1, Math.floor(params.chunk_size / (viewsPerItem * params.samples)));
  const itemsPerChunk = patched('evaluate-max-chunks') ? chunkSizeFor(items, wantedItems) : wantedItems;
  // The first chunk a quarter of the others ('evaluate-short-steps'), when chunks are large: the
  // first requests go out after a quarter of the writing, and the next chunk is written meanwhile.
  let firstChunk = itemsPerChunk;
  if (short && itemsPerChunk * viewsPerItem * params.samples >= SPLIT_FIRST_CHUNK_FROM) {
    const small = Math.floor(itemsPerChunk / 4);
    if (small >= 1 && small < items && 1 + Math.ceil((items - small) / itemsPerChunk) <= MAX_CHUNKS) firstChunk = small;
  }
  const chunks: [number, number][] = [];
  for (let a = 0; a < items;) {
    const b = Math.min(items, a + (a === 0 ? firstChunk : itemsPerChunk));
    chunks.push([a, b]);
    a = b;
  }

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
      ranges[i] = await (i === 0 ? acts : ahead).prepareEvaluationChunk({ runId, stageId, seed, params, datasetId, fromIdx, toIdx, endpoint });
      totals.total += ranges[i]!.count;
    }
  })().catch((err: unknown) => (prepareError = err));

  // Lane 2: inference, `parallel` chunks at once; lane 3: judging, started as each chunk ends.
  const judging: Promise<unknown>[] = [];
  let inferred = 0;
  let last: number | undefined;
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
        // The first chunk starts in this worker at once (its requests are the first of the stage:
        // nothing to spread yet); the others go to whichever worker polls the queue.
        eagerDispatch: i === 0,
      });
      totals.done += out.succeeded + out.failed;
      totals.failed += out.failed;
    }
    const [fromIdx, toIdx] = chunks[i]!;
    if (short && ++inferred === chunks.length) {
      last = i; // judged with the metrics, after the others' judging
      return;
    }
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

  const scoring = { runId, stageId, datasetId, seed, params, price: endpoint.price };
  let scored;
  if (last === undefined) scored = await acts.computeEvaluationMetrics(scoring);
  else {
    const [fromIdx, toIdx] = chunks[last]!;
    scored = await acts.judgeAndScoreEvaluation({ judge: { runId, stageId, seed, params, datasetId, fromIdx, toIdx }, metrics: scoring });
    await report();
  }
  return {
    ref: { datasetId, items, judgments: scored.judgments, accuracy: scored.accuracy, macroAccuracy: scored.macroAccuracy },
    items: { total: totals.total, done: totals.done, failed: totals.failed },
  };
}
