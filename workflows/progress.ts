import { getExternalWorkflowHandle, workflowInfo } from '@temporalio/workflow';
import { stageProgressSignal, type StageProgressUpdate } from './types.js';

/** Called from a stage workflow: tells the experiment workflow how far the stage is. */
export async function reportProgress(p: Omit<StageProgressUpdate, 'stageId'> & { stageId: string }): Promise<void> {
  const parent = workflowInfo().parent;
  if (!parent) return;
  await getExternalWorkflowHandle(parent.workflowId).signal(stageProgressSignal, p);
}
