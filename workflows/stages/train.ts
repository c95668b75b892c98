import {
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  defineSignal,
  isCancellation,
  proxyActivities,
  setHandler,
} from '@temporalio/workflow';
import type { TrainActivities } from '../../activities/stages/train.js';
import type { TrainParams } from '../../spec/kinds/train.js';
import { resolveDataRef } from '../artifacts.js';
import type { StageInput, StageOutput } from '../types.js';

/** Sent to a train stage's workflow (`<run id>/<stage id>`) when its job ended: it checks at once. */
export const trainingDoneSignal = defineSignal<[]>('trainingDone');

/** Where a train stage is after continue-as-new (its history stays small over long waits). */
export interface TrainResume {
  attempt: number;
  resubmits: number;
  jobId: string;
  outputDir: string;
  dataPath: string;
  sftArtifactId: number;
  /** Epoch ms after which the job is cancelled. */
  deadline: number;
}
export type TrainStageInput = StageInput<TrainParams> & { resume?: TrainResume };

const short = proxyActivities<TrainActivities>({
  startToCloseTimeout: '2 minutes',
  retry: {
    initialInterval: '1 second',
    maximumInterval: '30 seconds',
    maximumAttempts: 40,
    nonRetryableErrorTypes: ['TrainBackendError', 'SftSetError', 'TrainOutputError'],
  },
});
const long = proxyActivities<TrainActivities>({
  // Exporting a large sft-set or digesting a checkpoint reads files.
  startToCloseTimeout: '30 minutes',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 10, nonRetryableErrorTypes: ['SftSetError', 'TrainOutputError'] },
});

/** Status checks per workflow execution before continue-as-new. */
const POLLS_PER_EXECUTION = 400;

/**
 * The `train` stage. The job runs outside the worker; the workflow waits on a timer between short
 * status activities (no worker slot is held), or wakes on `trainingDone`. A job the backend lost is
 * failed or resubmitted (a new attempt, a new key) as `on_lost` says; a cancelled run stops the job.
 */
export async function trainStage(input: TrainStageInput): Promise<StageOutput> {
  const { runId, stageId, params } = input;
  let woken = false;
  setHandler(trainingDoneSignal, () => {
    woken = true;
  });

  let job: TrainResume;
  if (input.resume) job = input.resume;
  else {
    const ref = resolveDataRef(input, params.data, 'sft-set');
    if (ref.artifactId === undefined) throw ApplicationFailure.nonRetryable(`stage ${stageId}: the sft-set was not imported`, 'SpecError');
    const sftArtifactId = ref.artifactId;
    const prep = await long.prepareTraining({ runId, stageId, sftArtifactId, params });
    const sub = await short.submitTrainingJob({ runId, stageId, attempt: prep.attempt, params, dataPath: prep.dataPath });
    job = {
      attempt: prep.attempt,
      resubmits: 0,
      jobId: sub.jobId,
      outputDir: sub.outputDir,
      dataPath: prep.dataPath,
      sftArtifactId,
      deadline: Date.now() + params.timeout_s * 1000,
    };
  }
  const ref = () => ({ runId, stageId, attempt: job.attempt, backend: params.backend, jobId: job.jobId });

  try {
    for (let polls = 0; ; polls++) {
      const st = await short.pollTrainingJob({ ...ref(), outputDir: job.outputDir, logTailBytes: params.log_tail_bytes });
      if (st.state === 'succeeded') break;
      if (st.state === 'lost') {
        if (params.on_lost === 'resubmit' && job.resubmits < params.max_resubmits) {
          const lost = job.attempt;
          const attempt = lost + 1;
          const sub = await short.submitTrainingJob({
            runId,
            stageId,
            attempt,
            params,
            dataPath: job.dataPath,
            note: `resubmitted (on_lost: resubmit, ${job.resubmits + 1} of ${params.max_resubmits}): attempt ${lost} was lost: ${st.message ?? ''}`,
          });
          job = { ...job, attempt, resubmits: job.resubmits + 1, jobId: sub.jobId, outputDir: sub.outputDir };
          continue;
        }
        throw ApplicationFailure.nonRetryable(
          `training job ${job.jobId} (attempt ${job.attempt}) was lost by the ${params.backend.type} backend: ${st.message ?? 'unknown'}; on_lost: ${params.on_lost}${params.on_lost === 'resubmit' ? ` (${job.resubmits} of ${params.max_resubmits} resubmissions used)` : ''}`,
          'TrainJobLost',
        );
      }
      if (st.state === 'failed' || st.state === 'cancelled') {
        const what = st.state === 'cancelled' ? 'was cancelled at the backend' : `failed${st.exitCode !== undefined ? ` (exit code ${st.exitCode})` : ''}`;
        throw ApplicationFailure.nonRetryable(
          `training job ${job.jobId} ${what}${st.message ? `: ${st.message}` : ''}\n--- log tail ---\n${st.logTail ?? ''}`,
          'TrainJobFailed',
        );
      }
      if (Date.now() >= job.deadline) {
        await short.cancelTrainingJob({ ...ref(), state: 'timed_out', reason: `timeout_s ${params.timeout_s} reached` });
        throw ApplicationFailure.nonRetryable(`training job ${job.jobId} ran past timeout_s = ${params.timeout_s}: cancelled`, 'TrainTimeout');
      }
      if (polls + 1 >= POLLS_PER_EXECUTION) {
        await continueAsNew<typeof trainStage>({ ...input, resume: job });
      }
      woken = false;
      await condition(() => woken, Math.max(1, Math.min(params.poll_s * 1000, job.deadline - Date.now())));
    }
  } catch (err) {
    if (isCancellation(err)) {
      await CancellationScope.nonCancellable(() => short.cancelTrainingJob({ ...ref(), state: 'cancelled', reason: 'the run was cancelled' }));
    }
    throw err;
  }

  const done = await long.finishTraining({
    runId,
    stageId,
    attempt: job.attempt,
    params,
    sftArtifactId: job.sftArtifactId,
    outputDir: job.outputDir,
    jobId: job.jobId,
  });
  return {
    ref: { artifactId: done.artifactId, uri: done.uri, backend: params.backend.type, jobId: job.jobId, attempt: job.attempt, finalLoss: done.finalLoss },
    artifacts: { checkpoint: { id: done.artifactId, kind: 'checkpoint' } },
  };
}
