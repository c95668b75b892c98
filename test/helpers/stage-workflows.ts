import { ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import { reportProgress } from '../../workflows/progress.js';
import type { StageInput, StageOutput } from '../../workflows/types.js';
import type { TestActivities } from './test-activities.js';
import type { TestWorkParams } from './kinds.js';

const acts = proxyActivities<TestActivities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '3 seconds',
  retry: { initialInterval: '200 milliseconds', maximumInterval: '2 seconds' },
});

export async function testWorkStage(input: StageInput<TestWorkParams>): Promise<StageOutput> {
  const { items, ms, batch, fail } = input.params;
  if (fail) throw ApplicationFailure.nonRetryable(fail, 'TestStageFailure');
  let done = 0;
  for (let from = 0; from < items; from += batch) {
    const to = Math.min(items, from + batch);
    await acts.testWorkBatch({ runId: input.runId, stageId: input.stageId, from, to, ms });
    done = to;
    await reportProgress({ stageId: input.stageId, done, total: items, failed: 0 });
  }
  return { ref: { items: done }, items: { total: items, done, failed: 0 } };
}
