/** workflowsPath of the replay tests and their recorder: the shipped and test stage workflows, and `runInference` as a workflow. */
export * from '../helpers/workflows.js';
export { inferenceTestWorkflow } from '../inference/workflows.js';
