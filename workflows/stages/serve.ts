import { ActivityCancellationType, ApplicationFailure, ParentClosePolicy, proxyActivities, sleep, startChild, workflowInfo } from '@temporalio/workflow';
import type { PrepareServerOutput, RunServerInput, ServeActivities } from '../../activities/stages/serve.js';
import type { ServeParams } from '../../spec/kinds/serve.js';
import { resolveDataRef } from '../artifacts.js';
import type { StageInput, StageOutput } from '../types.js';

const short = proxyActivities<ServeActivities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '10 seconds', maximumAttempts: 30, nonRetryableErrorTypes: ['ServeError'] },
});

export interface ServerWorkflowInput extends RunServerInput {
  /** The server's activities run here (the serve stage's `task_queue`). */
  taskQueue?: string;
}

/**
 * The life of one served model: a single activity that starts the server, heartbeats while it
 * runs and stops it once the stages after it are done (or the run ended). Its worker dying is
 * noticed at the heartbeat timeout, and the activity (a new server on a new port) runs again on a
 * worker of the same queue. Started by `serveStage` and left running after it (ABANDON).
 */
export async function serverWorkflow(input: ServerWorkflowInput): Promise<{ reason: string }> {
  const acts = proxyActivities<ServeActivities>({
    taskQueue: input.taskQueue,
    // The whole life of the server; the heartbeat notices a dead worker.
    startToCloseTimeout: '30 days',
    heartbeatTimeout: '20 seconds',
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { initialInterval: '1 second', maximumInterval: '10 seconds', maximumAttempts: 4, nonRetryableErrorTypes: ['ServeError'] },
  });
  try {
    return await acts.runServer({ runId: input.runId, stageId: input.stageId, params: input.params, modelPath: input.modelPath, model: input.model });
  } catch (err) {
    const message = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    await short.serverFailed({ runId: input.runId, stageId: input.stageId, error: message });
    throw err;
  }
}

/**
 * The `serve` stage: starts the model's server (or checks the user's), waits until it lists the
 * model, and hands the stages after it an endpoint (`ref.artifactId`, model, identity, request
 * settings). The server outlives this workflow, in `serverWorkflow`.
 */
export async function serveStage(input: StageInput<ServeParams>): Promise<StageOutput> {
  const { runId, stageId, params } = input;
  let checkpointArtifactId: number | undefined;
  if ('from' in params.model) {
    const ref = resolveDataRef(input, params.model, 'checkpoint');
    checkpointArtifactId = ref.artifactId;
  }
  const prep: PrepareServerOutput = await short.prepareServer({
    runId,
    stageId,
    params,
    ...(checkpointArtifactId !== undefined ? { checkpointArtifactId } : {}),
  });
  const runInput = { runId, stageId, params, modelPath: prep.modelPath, model: prep.model };
  if (params.url !== undefined) {
    await short.checkExternalServer(runInput);
  } else {
    await startChild(serverWorkflow, {
      // One server workflow per execution of this stage.
      workflowId: `${runId}/${stageId}/server/${workflowInfo().runId}`,
      args: [{ ...runInput, ...(input.taskQueue ? { taskQueue: input.taskQueue } : {}) }],
      parentClosePolicy: ParentClosePolicy.ABANDON,
    });
    // Started: wait until it is ready (the activity records that).
    for (let waited = 0; ; waited++) {
      const st = await short.serverStatus({ runId, stageId });
      if (st.state === 'ready') break;
      if (st.state === 'failed' || st.state === 'stopped') {
        throw ApplicationFailure.nonRetryable(`the server of stage ${stageId} ${st.state}: ${st.error ?? ''}\n--- log tail ---\n${st.logTail}`, 'ServeError');
      }
      await sleep(waited < 20 ? '1 second' : '5 seconds');
    }
  }
  return {
    ref: {
      artifactId: prep.artifactId,
      model: prep.model,
      identity: prep.identity,
      concurrency: params.concurrency,
      timeout_s: params.timeout_s,
      max_attempts: params.max_attempts,
    },
    artifacts: { endpoint: { id: prep.artifactId, kind: 'endpoint' } },
  };
}
