/**
 * A deliberately incompatible experiment workflow: it starts a timer before doing what the
 * recorded history did. Replaying the committed history against it must fail.
 */
import { sleep } from '@temporalio/workflow';
import { experimentWorkflow as original } from '../../workflows/experiment.js';
import type { ExperimentInput } from '../../workflows/types.js';

export async function experimentWorkflow(input: ExperimentInput) {
  await sleep('1 second');
  return original(input);
}
export { testWorkStage } from '../helpers/stage-workflows.js';
