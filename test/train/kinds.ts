/**
 * Test-only stage kind `test-sft`: hands a TRL JSONL file on as an `sft-set` artifact (source =
 * the file, format trl-jsonl), standing in for `distill` until that stage lands beside `train`.
 */
import { z } from 'zod';
import { registerStageKind, type StageWorkflowType } from '../../spec/kinds.js';

export const testSftParams = z.object({ path: z.string().min(1) }).strict();
export type TestSftParams = z.infer<typeof testSftParams>;

registerStageKind({
  kind: 'test-sft',
  description: 'test only: a TRL conversational JSONL file as an sft-set artifact',
  workflowType: 'testSftStage' as StageWorkflowType,
  params: testSftParams,
  produces: { sft: 'sft-set' },
});
