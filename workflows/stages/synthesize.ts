import { proxyActivities } from '@temporalio/workflow';
import type { SynthesisRequestRange, SynthesizeActivities } from '../../activities/stages/synthesize.js';
import type { SynthesizeParams } from '../../spec/kinds/synthesize.js';
import { resolveDataRef } from '../artifacts.js';
import { chunkSizeFor, runInference } from '../inference.js';
import { reportProgress } from '../progress.js';
import type { StageInput, StageOutput } from '../types.js';

const acts = proxyActivities<SynthesizeActivities>({
  startToCloseTimeout: '1 hour',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute', maximumAttempts: 10, nonRetryableErrorTypes: ['DatasetError'] },
});

/**
 * The `synthesize` stage. Source items are cut into chunks of about `chunk_size` requests; up to
 * `parallel` chunks are in flight, each writing its requests, running them through the gateway
 * (cache, limits, retries) and filtering the outputs into multiple-choice items. The artifact is
 * sealed last, with its per-error-type counts. Only ids and counts pass through the history.
 */
export async function synthesizeStage(input: StageInput<SynthesizeParams>): Promise<StageOutput> {
  const { runId, stageId, params, seed } = input;
  const endpoint = input.endpoints[params.writer]!;
  const begun = await acts.beginSynthesis({ runId, stageId, ...resolveDataRef(input, params.items, 'qa-items') });
  const { sourceArtifactId, artifactId, items } = begun;

  const perItem = params.error_types.length * params.samples;
  const itemsPerChunk = chunkSizeFor(items, Math.max(1, Math.floor(params.chunk_size / perItem)));
  const chunks: [number, number][] = [];
  for (let a = 0; a < items; a += itemsPerChunk) chunks.push([a, Math.min(items, a + itemsPerChunk)]);

  const totals = { done: 0, failed: 0 };
  const total = items * perItem;
  // Chunks are prepared one at a time: each chunk's request ids then form a range no other
  // chunk's rows fall into (inference runs over id ranges).
  let preparing: Promise<unknown> = Promise.resolve();
  const runChunk = async ([fromIdx, toIdx]: [number, number]): Promise<void> => {
    const chunk = { runId, stageId, seed, params, sourceArtifactId, artifactId, fromIdx, toIdx, endpoint };
    const prepared = preparing.then(() => acts.prepareSynthesisChunk(chunk));
    preparing = prepared.catch(() => undefined);
    const range: SynthesisRequestRange = await prepared;
    if (range.count > 0) {
      const out = await runInference({
        runId,
        stageId,
        endpointName: params.writer,
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
    await acts.buildSynthesisChunk(chunk);
    await reportProgress({ stageId, done: totals.done, failed: totals.failed, total });
  };

  const inflight = new Map<number, Promise<number>>();
  let next = 0;
  while (next < chunks.length || inflight.size > 0) {
    while (inflight.size < params.parallel && next < chunks.length) {
      const i = next++;
      inflight.set(
        i,
        runChunk(chunks[i]!).then(() => i),
      );
    }
    inflight.delete(await Promise.race(inflight.values()));
  }

  const sealed = await acts.sealSynthesis({ runId, stageId, params, sourceArtifactId, artifactId, sourceItems: items });
  return {
    ref: { artifactId, sourceArtifactId, items: sealed.rows, sourceItems: items, contentHash: sealed.contentHash },
    items: { total, done: totals.done, failed: totals.failed },
    artifacts: { items: { id: artifactId, kind: 'mc-items' } },
  };
}
