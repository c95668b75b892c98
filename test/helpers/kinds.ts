/** Test-only stage kinds: registered by the tests, never shipped. */
import { z } from 'zod';
import { registerStageKind, type StageWorkflowType } from '../../spec/kinds.js';

export const testWorkParams = z
  .object({
    items: z.number().int().nonnegative().default(4),
    ms: z.number().int().nonnegative().default(50),
    batch: z.number().int().positive().default(2),
    fail: z.string().optional(),
  })
  .strict();
export type TestWorkParams = z.infer<typeof testWorkParams>;

registerStageKind({
  kind: 'test-work',
  description: 'test only: processes N items in batches, sleeping ms per item',
  // Test workers load test/helpers/workflows.ts, which exports it beside the shipped workflows.
  workflowType: 'testWorkStage' as StageWorkflowType,
  params: testWorkParams,
});
