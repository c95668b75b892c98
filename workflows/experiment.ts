/**
 * The experiment workflow: interprets a run's DAG. Each stage is a child workflow with id
 * `<run id>/<stage id>`, started as soon as its needs have succeeded; independent stages run
 * concurrently. Stage status lives in Postgres (written by activities); the `progress` query gives
 * stage statuses, and each running stage answers its own `stageProgress` query with live counts
 * (stages of older histories signal them here instead: the handler stays).
 */
import {
  ApplicationFailure,
  CancellationScope,
  ParentClosePolicy,
  condition,
  executeChild,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  workflowInfo,
  type ActivityOptions,
} from '@temporalio/workflow';
import type { RecordActivities } from '../activities/records.js';
import type { ReuseActivities } from '../activities/reuse.js';
import type { EndpointSpec } from '../spec/endpoint.js';
import { dependentsOf } from './dag.js';
import {
  progressQuery,
  stageProgressSignal,
  type ExperimentInput,
  type ExperimentOutput,
  type RunProgress,
  type StageInput,
  type StageOutput,
  type StagePlan,
  type StageProgress,
} from './types.js';

interface PreflightActivities {
  checkEndpoints(input: { endpoints: Record<string, EndpointSpec> }): Promise<unknown>;
}

const RECORD_OPTIONS = {
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', nonRetryableErrorTypes: ['RunNotFound'] },
};
const taskRecords = proxyActivities<RecordActivities>(RECORD_OPTIONS);
// The run and stage records are short Postgres writes: as local activities they run in the worker
// that runs this workflow, within its workflow task, instead of a round trip through the server
// each (about 5 of a short run's workflow tasks). Runs begun before 'records-local' keep tasks.
const localRecords = proxyLocalActivities<RecordActivities>(RECORD_OPTIONS);

const REUSE_OPTIONS = {
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
};
const reuse = proxyActivities<ReuseActivities>(REUSE_OPTIONS);
// A claim is one short transaction: as a local activity it runs within the workflow task that then
// starts the stage ('claim-local'; runs begun before keep the activity task).
const localReuse = proxyLocalActivities<ReuseActivities>(REUSE_OPTIONS);

const PREFLIGHT_OPTIONS: ActivityOptions = {
  startToCloseTimeout: '2 minutes',
  retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['EndpointError'] },
};
const preflight = proxyActivities<PreflightActivities>(PREFLIGHT_OPTIONS);
// The check of the endpoints called from the run's own queue, as a local activity: in this worker,
// within the workflow task that then starts the first stage (no round trip of its own).
const localPreflight = proxyLocalActivities<PreflightActivities>({
  startToCloseTimeout: PREFLIGHT_OPTIONS.startToCloseTimeout!,
  retry: PREFLIGHT_OPTIONS.retry,
});

export function errorMessage(err: unknown): string {
  // Child failures wrap the stage's own error: report the innermost message.
  let cur: unknown = err;
  let msg = err instanceof Error ? err.message : String(err);
  while (cur && typeof cur === 'object' && 'cause' in cur && (cur as { cause?: unknown }).cause) {
    cur = (cur as { cause: unknown }).cause;
    if (cur instanceof Error && cur.message) msg = cur.message;
  }
  return msg;
}

export async function experimentWorkflow({ runId }: ExperimentInput): Promise<ExperimentOutput> {
  // Handlers first: a query may arrive before the plan is loaded.
  const progress = new Map<string, StageProgress>();
  let runStatus: RunProgress['status'] = 'running';
  setHandler(progressQuery, () => ({ runId, status: runStatus, stages: [...progress.values()].map(withEta) }));
  setHandler(stageProgressSignal, ({ stageId, done, total, failed }) => {
    const p = progress.get(stageId);
    if (p && p.status === 'running') Object.assign(p, { done, total, failed });
  });

  const local = patched('records-local');
  const records = local ? localRecords : taskRecords;
  const stageRuns: Promise<unknown>[] = [];
  const plan = await records.beginRun({ runId, workflowRunId: workflowInfo().runId });
  for (const s of plan.stages) {
    progress.set(s.id, { id: s.id, kind: s.kind, status: plan.succeeded[s.id] ? 'succeeded' : 'pending', done: 0, total: 0, failed: 0 });
  }
  const outputs: Record<string, StageOutput> = { ...plan.succeeded };

  let changed = false;
  const failures: string[] = [];

  const runStage = async (stage: StagePlan): Promise<void> => {
    const p = progress.get(stage.id)!;
    p.status = 'running';
    p.startedAt = Date.now();
    const inputs = Object.fromEntries(stage.needs.map((n) => [n, outputs[n]!]));
    // Stage reuse (activities/reuse.ts): take an identical earlier stage's artifacts, or wait while
    // another run computes them, or claim the stage and run it.
    if (patched('stage-reuse') && stage.reuse !== false) {
      const claims = patched('claim-local') ? localReuse : reuse;
      for (;;) {
        const claim = await claims.claimStage({ runId, seed: plan.seed, stage, inputs });
        if (claim.action === 'run') break;
        if (claim.action === 'reused') {
          outputs[stage.id] = claim.output;
          Object.assign(p, { status: 'succeeded', finishedAt: Date.now(), reusedFrom: `${claim.from.runId}/${claim.from.stageId}` }, claim.output.items ?? {});
          return;
        }
        await sleep('2 seconds');
      }
    }
    await records.markStageRunning({ runId, stageId: stage.id });
    const input: StageInput = {
      runId,
      stageId: stage.id,
      kind: stage.kind,
      seed: plan.seed,
      params: stage.params,
      endpoints: stage.endpoints,
      datasets: stage.datasets,
      inputs,
      taskQueue: stage.taskQueue,
    };
    try {
      const out = await executeChild<(i: StageInput) => Promise<StageOutput>>(stage.workflowType, {
        workflowId: `${runId}/${stage.id}`,
        args: [input],
        parentClosePolicy: ParentClosePolicy.TERMINATE,
      });
      outputs[stage.id] = out;
      await records.finishStage({ runId, stageId: stage.id, status: 'succeeded', output: out });
      Object.assign(p, { status: 'succeeded', finishedAt: Date.now() });
      if (out.items) Object.assign(p, out.items);
    } catch (err) {
      if (isCancellation(err)) throw err;
      const message = errorMessage(err);
      p.status = 'failed';
      p.error = message;
      p.finishedAt = Date.now();
      failures.push(`${stage.id}: ${message}`);
      await records.finishStage({ runId, stageId: stage.id, status: 'failed', error: message });
      const skipped = dependentsOf(plan.stages, stage.id);
      await records.skipStages({ runId, stageIds: skipped, reason: `skipped: needs stage "${stage.id}", which failed` });
      for (const id of skipped) {
        const d = progress.get(id)!;
        if (d.status === 'pending') Object.assign(d, { status: 'skipped', error: `needs stage "${stage.id}", which failed` });
      }
    } finally {
      changed = true;
    }
  };

  try {
    // Each endpoint is checked from where its requests will go: on the task queue of the stages that
    // call it, so a pool's workers alone need its key and its network. (Runs begun before this
    // check every endpoint on the run's queue.)
    const byQueue = new Map<string, Record<string, EndpointSpec>>();
    const perQueue = patched('endpoint-check-per-queue');
    for (const s of plan.stages) {
      if (plan.succeeded[s.id]) continue;
      const queue = (perQueue && s.taskQueue) || '';
      byQueue.set(queue, { ...byQueue.get(queue), ...s.endpoints });
    }
    const checks = [...byQueue].filter(([, endpoints]) => Object.keys(endpoints).length > 0);
    if (checks.length > 0) {
      const onRunQueue = patched('endpoint-check-local') ? localPreflight : preflight;
      try {
        await Promise.all(
          checks.map(([queue, endpoints]) =>
            (queue ? proxyActivities<PreflightActivities>({ ...PREFLIGHT_OPTIONS, taskQueue: queue }) : onRunQueue).checkEndpoints({ endpoints }),
          ),
        );
      } catch (err) {
        if (isCancellation(err)) throw err;
        const message = `endpoint check failed: ${errorMessage(err)}`;
        const pending = plan.stages.filter((s) => !plan.succeeded[s.id]).map((s) => s.id);
        await records.skipStages({ runId, stageIds: pending, reason: message });
        await records.finishRun({ runId, status: 'failed', error: message });
        runStatus = 'failed';
        throw ApplicationFailure.nonRetryable(message, 'RunFailed');
      }
    }

    const running = new Set<string>();
    for (;;) {
      const ready = plan.stages.filter(
        (s) => progress.get(s.id)!.status === 'pending' && !running.has(s.id) && s.needs.every((n) => progress.get(n)!.status === 'succeeded'),
      );
      for (const s of ready) {
        running.add(s.id);
        // Cancellation reaches the main loop through condition(); a stage only records outcomes.
        const stageRun = runStage(s)
          .catch((err: unknown) => {
            if (!isCancellation(err)) failures.push(`${s.id}: ${errorMessage(err)}`);
          })
          .finally(() => {
            running.delete(s.id);
            changed = true;
          });
        stageRuns.push(stageRun);
      }
      if (running.size === 0) break;
      changed = false;
      await condition(() => changed);
    }

    if (failures.length > 0) {
      const message = `${failures.length} stage(s) failed: ${failures.join('; ')}`;
      await records.finishRun({ runId, status: 'failed', error: message });
      runStatus = 'failed';
      throw ApplicationFailure.nonRetryable(message, 'RunFailed');
    }
    await records.finishRun({ runId, status: 'succeeded' });
    runStatus = 'succeeded';
    return { runId, status: 'succeeded', stages: outputs };
  } catch (err) {
    if (isCancellation(err)) {
      runStatus = 'cancelled';
      for (const p of progress.values()) if (p.status === 'pending' || p.status === 'running') p.status = 'cancelled';
      await CancellationScope.nonCancellable(async () => {
        // Local records finish within this workflow task: wait for the stages to end their
        // cancellation first, or closing this run would terminate them before they record it.
        if (local) await Promise.all(stageRuns);
        await records.cancelStages({ runId });
        await records.finishRun({ runId, status: 'cancelled', error: 'cancelled by user' });
      });
    }
    throw err;
  }
}

function withEta(p: StageProgress): StageProgress {
  if (p.status !== 'running' || !p.startedAt || p.done <= 0 || p.total <= p.done) return { ...p };
  const elapsed = (Date.now() - p.startedAt) / 1000;
  return { ...p, etaSeconds: Math.round(((p.total - p.done) * elapsed) / p.done) };
}
