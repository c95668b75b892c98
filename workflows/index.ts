/** The worker's workflowsPath: workflow functions only. */
export { experimentWorkflow } from './experiment.js';
export { evaluateStage } from './stages/evaluate.js';
export { synthesizeStage } from './stages/synthesize.js';
export { trainStage } from './stages/train.js';
