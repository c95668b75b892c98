/** The workflowsPath of the inference tests: a thin workflow over `runInference`. */
import { runInference, type InferenceProgress, type RunInferenceOptions, type RunInferenceResult } from '../../workflows/inference.js';

export type InferenceTestInput = Omit<RunInferenceOptions, 'onProgress'>;

export async function inferenceTestWorkflow(input: InferenceTestInput): Promise<RunInferenceResult & { progress: InferenceProgress[] }> {
  const progress: InferenceProgress[] = [];
  const result = await runInference({ ...input, onProgress: (p) => void progress.push(p) });
  return { ...result, progress };
}
