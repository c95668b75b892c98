/** workflowsPath of the train tests' workers: the test workflows plus `test-sft`. */
export * from '../helpers/workflows.js';
export { testSftStage } from './stage-workflows.js';
