/**
 * `runInference`: workflow code that sends a stage's prepared request rows through the gateway.
 *
 * The id range is cut into chunks; `executeRequests` activities run over them with a sliding
 * window (`parallel` in flight), so a worker's endpoint limiter stays full across chunk boundaries
 * and several workers share the chunks. Item failures are data (rows marked failed); an
 * endpoint-fatal error (bad key, unknown model, nothing listening) cancels the other chunks and
 * fails with a non-retryable ApplicationFailure carrying the activity's message.
 */
import { ActivityFailure, ApplicationFailure, CancellationScope, patched, proxyActivities, type ActivityOptions } from '@temporalio/workflow';
import { ENDPOINT_FATAL_ERROR_TYPES, type ExecuteRequestsInput, type ExecuteRequestsOutput, type InferenceActivities } from '../activities/inference/types.js';

export interface InferenceProgress {
  /** Finished rows (succeeded + failed) of the chunks done so far. */
  done: number;
  failed: number;
  total: number;
}

/** The stage's rows to run: `fromId`..`toId` is the inclusive id range from `requestIdRange`. */
export interface RunInferenceOptions extends ExecuteRequestsInput {
  /** Rows in the range (from `requestIdRange`), for progress; default toId - fromId + 1. */
  total?: number;
  /** Rows per activity. Default 500; larger when the range would make more than MAX_CHUNKS chunks. */
  chunkSize?: number;
  /** Chunk activities in flight. Default 2. */
  parallel?: number;
  /** How long a silent activity (worker gone) is given before it is retried elsewhere. Default 30 s. */
  heartbeatTimeout?: ActivityOptions['heartbeatTimeout'];
  /** Task queue of the activities (default: the workflow's). */
  taskQueue?: string;
  /**
   * Let the server hand the chunk activities straight to the worker running this workflow, in the
   * reply to its workflow task (default false: they go through the task queue to whichever worker
   * polls it, so chunks spread over the workers). Which worker runs a chunk changes no command
   * of the history, so this needs no `patched()`.
   */
  eagerDispatch?: boolean;
  onProgress?: (p: InferenceProgress) => void | Promise<void>;
}

export type RunInferenceResult = ExecuteRequestsOutput & { total: number; chunks: number };

/**
 * The most chunks one workflow cuts a stage into. A chunk costs history events (6 in
 * `runInference`, measured by bench/scale.ts; about 15 in the evaluate stage, which runs three
 * activities a chunk) and a history is capped at 51,200 events (warned from 10,240), so past this
 * the chunks grow instead: a 3-million-request stage has 400 chunks of 7,500, each paging through
 * its rows.
 */
export const MAX_CHUNKS = 400;

/** Items (or rows) per chunk: `wanted`, unless that would make more than MAX_CHUNKS chunks. */
export function chunkSizeFor(count: number, wanted: number): number {
  return Math.max(1, Math.floor(wanted), Math.ceil(count / MAX_CHUNKS));
}

/** Retries of an activity that sends requests: a crash or a lost worker is retried; an endpoint-fatal error is not. */
export const CHUNK_RETRY = {
  initialInterval: '1 second',
  backoffCoefficient: 2,
  maximumInterval: '1 minute',
  maximumAttempts: 20,
  nonRetryableErrorTypes: [...ENDPOINT_FATAL_ERROR_TYPES],
} as const satisfies ActivityOptions['retry'];

export async function runInference(opts: RunInferenceOptions): Promise<RunInferenceResult> {
  const total = opts.total ?? Math.max(0, opts.toId - opts.fromId + 1);
  const wanted = Math.max(1, opts.chunkSize ?? 500);
  const chunkSize = patched('inference-max-chunks') ? chunkSizeFor(opts.toId - opts.fromId + 1, wanted) : wanted;
  const parallel = Math.max(1, opts.parallel ?? 2);
  const { executeRequests } = proxyActivities<InferenceActivities>({
    // Generous: a chunk that outlives it is retried and resumes from its heartbeat cursor.
    startToCloseTimeout: '30 minutes',
    heartbeatTimeout: opts.heartbeatTimeout ?? '30 seconds',
    taskQueue: opts.taskQueue,
    // Chunks go through the task queue to whichever worker polls it. Eager dispatch (on by default
    // in recent servers) would hand every chunk to the worker running this workflow: no spread.
    allowEagerDispatch: opts.eagerDispatch === true,
    retry: CHUNK_RETRY,
  });

  const chunks: [number, number][] = [];
  for (let a = opts.fromId; a <= opts.toId; a += chunkSize) chunks.push([a, Math.min(opts.toId, a + chunkSize - 1)]);
  const totals: RunInferenceResult = { succeeded: 0, failed: 0, cached: 0, sent: 0, promptTokens: 0, completionTokens: 0, total, chunks: chunks.length };

  const scope = new CancellationScope();
  try {
    await scope.run(async () => {
      const inflight = new Map<number, Promise<[number, ExecuteRequestsOutput]>>();
      let next = 0;
      while (next < chunks.length || inflight.size > 0) {
        while (inflight.size < parallel && next < chunks.length) {
          const i = next++;
          const [fromId, toId] = chunks[i]!;
          const input = { runId: opts.runId, stageId: opts.stageId, endpointName: opts.endpointName, endpoint: opts.endpoint, fromId, toId };
          inflight.set(
            i,
            executeRequests(input).then((out) => [i, out] as [number, ExecuteRequestsOutput]),
          );
        }
        const [i, out] = await Promise.race(inflight.values());
        inflight.delete(i);
        totals.succeeded += out.succeeded;
        totals.failed += out.failed;
        totals.cached += out.cached;
        totals.sent += out.sent;
        totals.promptTokens += out.promptTokens;
        totals.completionTokens += out.completionTokens;
        await opts.onProgress?.({ done: totals.succeeded + totals.failed, failed: totals.failed, total });
      }
    });
  } catch (err) {
    // Stop the other chunks: they would hit the same endpoint error.
    scope.cancel();
    throw chunkFailure(err);
  }
  return totals;
}

/**
 * A chunk activity's failure as the stage's: its application error's type and message, not
 * retried (the activity's own retries are spent, or the error is endpoint-fatal).
 */
export function chunkFailure(err: unknown): unknown {
  if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure) {
    const cause = err.cause;
    return ApplicationFailure.create({ type: cause.type ?? 'InferenceFailed', message: cause.message, nonRetryable: true, cause: err });
  }
  return err;
}
