/** workflowsPath of test workers: the shipped workflows plus the test-only stage kinds. */
export * from '../../workflows/index.js';
export { testWorkStage } from './stage-workflows.js';
