import { ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { SweepActivities, SweepChunkInput, SweepRound } from '../../activities/stages/sweep.js';
import type { SweepParams } from '../../spec/kinds/sweep.js';
import { resolveDataRef } from '../artifacts.js';
import { runInference } from '../inference.js';
import { reportProgress } from '../progress.js';
import type { StageInput, StageOutput } from '../types.js';

const acts = proxyActivities<SweepActivities>({
  startToCloseTimeout: '1 hour',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute', maximumAttempts: 10, nonRetryableErrorTypes: ['DatasetError'] },
});

/** More rounds than any strategy needs (knockout over 256 candidates in pairs takes 8): a guard against a loop. */
const MAX_ROUNDS = 64;

/**
 * The `sweep` stage. Questions are cut into chunks of `chunk_size`; up to `parallel` chunks are in
 * flight, each going through three phases: the pool (n_max policy samples per question), grading
 * rounds and selection rounds. A round's activity writes the requests still needed and returns
 * their id range; the gateway runs them; the next round reads the outputs. Preparations are
 * serialized so that a round's id range holds only that round's rows. The curve is computed last.
 */
export async function sweepStage(input: StageInput<SweepParams>): Promise<StageOutput> {
  const { runId, stageId, params, seed } = input;
  const endpoints = input.endpoints;
  const begun = await acts.beginSweep({ runId, stageId, ...resolveDataRef(input, params.items, 'qa-items') });
  const { sourceArtifactId, artifactId, questions } = begun;

  const chunks: [number, number][] = [];
  const size = Math.max(1, params.chunk_size, Math.ceil(questions / 200));
  for (let a = 0; a < questions; a += size) chunks.push([a, Math.min(questions, a + size)]);

  let preparing: Promise<unknown> = Promise.resolve();
  const serialized = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = preparing.then(fn);
    preparing = p.catch(() => undefined);
    return p;
  };
  const totals = { done: 0, failed: 0 };
  const run = async (round: SweepRound): Promise<void> => {
    if (round.count === 0) return;
    const out = await runInference({
      runId,
      stageId,
      endpointName: round.endpoint,
      endpoint: endpoints[round.endpoint]!,
      fromId: round.fromId,
      toId: round.toId,
      total: round.count,
      chunkSize: round.count,
      parallel: 1,
      taskQueue: input.taskQueue,
    });
    totals.failed += out.failed;
  };
  const phase = async (what: string, step: () => Promise<SweepRound>): Promise<void> => {
    for (let i = 0; ; i++) {
      if (i >= MAX_ROUNDS)
        throw ApplicationFailure.nonRetryable(`stage ${stageId}: ${what} still needs requests after ${MAX_ROUNDS} rounds`, 'SweepRoundsExceeded');
      const round = await serialized(step);
      if (round.count === 0) return;
      await run(round);
    }
  };
  const runChunk = async ([fromIdx, toIdx]: [number, number]): Promise<void> => {
    const chunk: SweepChunkInput = { runId, stageId, seed, params, sourceArtifactId, fromIdx, toIdx, endpoints };
    await run(await serialized(() => acts.prepareSweepPool(chunk)));
    await phase('grading', () => acts.gradeSweepChunk(chunk));
    await phase('selection', () => acts.selectSweepChunk(chunk));
    totals.done += toIdx - fromIdx;
    await reportProgress({ stageId, done: totals.done, failed: totals.failed, total: questions });
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

  const sealed = await acts.sealSweep({ runId, stageId, seed, params, sourceArtifactId, artifactId, questions, endpoints });
  return {
    ref: {
      artifactId,
      sourceArtifactId,
      questions,
      points: sealed.points,
      policyRequests: sealed.requests.policy.rows,
      judgeRequests: sealed.requests.judge.rows,
      graderRequests: sealed.requests.grader.rows,
    },
    items: { total: questions, done: totals.done, failed: totals.failed },
    artifacts: { curve: { id: artifactId, kind: 'curve' } },
  };
}
