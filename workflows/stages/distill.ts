import { CancellationScope, patched, proxyActivities } from '@temporalio/workflow';
import type { DistillActivities, DistillItemsOutput, DistillRequestRange } from '../../activities/stages/distill.js';
import type { DistillParams } from '../../spec/kinds/distill.js';
import { resolveDataRef } from '../artifacts.js';
import { CHUNK_RETRY, chunkFailure, chunkSizeFor, runInference } from '../inference.js';
import { reportProgress } from '../progress.js';
import type { StageInput, StageOutput } from '../types.js';

const acts = proxyActivities<DistillActivities>({
  // Each step is one pass of SQL over the stage's rows: a worker that dies in one is noticed soon.
  startToCloseTimeout: '10 minutes',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute', maximumAttempts: 10, nonRetryableErrorTypes: ['DatasetError'] },
});

/**
 * The `distill` stage: captions (one request per distinct image), then up to `max_attempts`
 * rounds. Round `a` sends sample-index-`a` reasoning requests for the items without an accepted
 * trace, then each rewrite pass over the traces still standing, then judges every item's attempt
 * into `distill_attempts`. The sets are built and sealed last. Each step reads and writes Postgres
 * only, so a restarted worker resumes the round it was in; only ids and counts pass through here.
 */
export async function distillStage(input: StageInput<DistillParams>): Promise<StageOutput> {
  const { runId, stageId, params, seed } = input;
  const begun = await acts.beginDistill({ runId, stageId, ...resolveDataRef(input, params.items, 'mc-items') });
  const { sourceArtifactId, sftArtifactId, rlArtifactId, items } = begun;
  const ref = { runId, stageId, seed, params, sourceArtifactId, items };
  const totals = { done: 0, failed: 0 };

  const run = async (endpointName: string, range: DistillRequestRange) => {
    if (range.count === 0) return;
    const out = await runInference({
      runId,
      stageId,
      endpointName,
      endpoint: input.endpoints[endpointName]!,
      fromId: range.fromId,
      toId: range.toId,
      total: range.count,
      chunkSize: params.chunk_size,
      parallel: params.parallel,
      taskQueue: input.taskQueue,
    });
    totals.failed += out.failed;
  };

  await run(params.captioner, await acts.prepareDistillCaptions({ ...ref, endpoint: input.endpoints[params.captioner]! }));
  let accepted = 0;
  if (patched('distill-pipeline')) {
    // Each item through its own attempts, `chunk_size` items an activity, `parallel` at once.
    const { distillItems } = proxyActivities<DistillActivities>({
      startToCloseTimeout: '2 hours',
      heartbeatTimeout: '30 seconds',
      taskQueue: input.taskQueue,
      allowEagerDispatch: false,
      retry: { ...CHUNK_RETRY, nonRetryableErrorTypes: [...CHUNK_RETRY.nonRetryableErrorTypes, 'DatasetError'] },
    });
    const names = [params.reasoner, ...params.rewrites.map((p) => p.endpoint)];
    const endpoints = Object.fromEntries(names.map((n) => [n, input.endpoints[n]!]));
    const size = chunkSizeFor(items, params.chunk_size);
    const ranges: [number, number][] = [];
    for (let from = 0; from < items; from += size) ranges.push([from, Math.min(items, from + size)]);
    const scope = new CancellationScope();
    try {
      await scope.run(async () => {
        const inflight = new Map<number, Promise<[number, DistillItemsOutput]>>();
        let next = 0;
        while (next < ranges.length || inflight.size > 0) {
          while (inflight.size < params.parallel && next < ranges.length) {
            const i = next++;
            const [fromIdx, toIdx] = ranges[i]!;
            inflight.set(
              i,
              distillItems({ ...ref, fromIdx, toIdx, endpoints }).then((out) => [i, out] as [number, DistillItemsOutput]),
            );
          }
          const [i, out] = await Promise.race(inflight.values());
          inflight.delete(i);
          accepted += out.accepted;
          totals.failed += out.failedRequests;
          await reportProgress({ stageId, done: accepted, failed: totals.failed, total: items });
        }
      });
    } catch (err) {
      // The other ranges would meet the same endpoint error.
      scope.cancel();
      throw chunkFailure(err);
    }
  } else {
    for (let attempt = 0; attempt < params.max_attempts; attempt++) {
      await run(params.reasoner, await acts.prepareDistillReasonRound({ ...ref, attempt, endpoint: input.endpoints[params.reasoner]! }));
      for (let pass = 0; pass < params.rewrites.length; pass++) {
        const endpoint = params.rewrites[pass]!.endpoint;
        await run(endpoint, await acts.prepareDistillRewriteRound({ ...ref, attempt, pass, endpoint: input.endpoints[endpoint]! }));
      }
      const judged = await acts.judgeDistillRound({ ...ref, attempt });
      accepted += judged.accepted;
      totals.done = accepted;
      await reportProgress({ stageId, done: accepted, failed: totals.failed, total: items });
      if (judged.pending === 0) break;
    }
  }

  const built = await acts.buildDistillSets({ ...ref, sftArtifactId, rlArtifactId });
  return {
    ref: {
      sftArtifactId,
      rlArtifactId,
      sourceArtifactId,
      items,
      accepted: built.summary.accepted_items,
      sftRows: built.sft.rows,
      rlRows: built.rl.rows,
      sftHash: built.sft.contentHash,
      rlHash: built.rl.contentHash,
    },
    items: { total: items, done: built.summary.accepted_items, failed: items - built.summary.accepted_items },
    artifacts: { sft: { id: sftArtifactId, kind: 'sft-set' }, rl: { id: rlArtifactId, kind: 'rl-set' } },
  };
}
