import { getExternalWorkflowHandle, patched, setHandler, workflowInfo } from '@temporalio/workflow';
import { stageProgressQuery, stageProgressSignal, type StageProgressUpdate } from './types.js';

/**
 * Called from a stage workflow as it advances. The stage answers the `stageProgress` query with the
 * latest figures; readers (`judgeflow status`, cli/live-progress.ts) ask the running stages.
 *
 * Stages used to signal the experiment workflow at every call, one signal (and a workflow task) per
 * chunk in the parent's history. Since the 'progress-by-query' patch they send nothing; histories
 * begun before it keep signalling so they replay, and the experiment workflow still takes signals.
 */
export async function reportProgress(p: StageProgressUpdate): Promise<void> {
  const latest = { ...p };
  setHandler(stageProgressQuery, () => latest);
  const parent = workflowInfo().parent;
  if (!parent || patched('progress-by-query')) return;
  await getExternalWorkflowHandle(parent.workflowId).signal(stageProgressSignal, p);
}

/** Seconds left at the rate so far, for a running stage that has started and not finished. */
export function etaSeconds(p: { status: string; startedAt?: number; done: number; total: number }, now: number): number | undefined {
  if (p.status !== 'running' || !p.startedAt || p.done <= 0 || p.total <= p.done) return undefined;
  const elapsed = (now - p.startedAt) / 1000;
  return Math.round(((p.total - p.done) * elapsed) / p.done);
}
