import { proxyActivities } from '@temporalio/workflow';
import type { StageInput, StageOutput } from '../../workflows/types.js';
import type { TestSftParams } from './kinds.js';
import type { TrainTestActivities } from './activities.js';

const acts = proxyActivities<TrainTestActivities>({ startToCloseTimeout: '1 minute' });

export async function testSftStage(input: StageInput<TestSftParams>): Promise<StageOutput> {
  const { artifactId, rows } = await acts.registerSftFile({ runId: input.runId, stageId: input.stageId, path: input.params.path });
  return { ref: { artifactId, rows }, artifacts: { sft: { id: artifactId, kind: 'sft-set' } } };
}
