import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DeterminismViolationError } from '@temporalio/workflow';
import { Worker } from '@temporalio/worker';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { REPO, TEST_WORKFLOWS } from '../helpers/env.js';

const history = historyFromJSON(JSON.parse(readFileSync(join(REPO, 'test', 'replay', 'histories', 'experiment-diamond.json'), 'utf8')));

describe('replay of committed experiment histories', () => {
  it('the recorded history has the stages it should (guards against an empty fixture)', () => {
    const children = (history.events ?? []).filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes);
    expect(children.map((e) => e.startChildWorkflowExecutionInitiatedEventAttributes!.workflowId!.split('/')[1]).sort()).toEqual(['a', 'b', 'broken', 'c', 'd']);
  });

  it('replays cleanly with the current workflow code', async () => {
    await Worker.runReplayHistory({ workflowsPath: TEST_WORKFLOWS }, history, 'experiment-diamond');
  });

  it('fails replay after a deliberately incompatible change', async () => {
    await expect(
      Worker.runReplayHistory({ workflowsPath: join(REPO, 'test', 'replay', 'incompatible-workflows.ts') }, history, 'experiment-diamond'),
    ).rejects.toBeInstanceOf(DeterminismViolationError);
  });
});
