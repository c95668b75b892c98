/** The worker's workflowsPath: workflow functions only. */
export { experimentWorkflow } from './experiment.js';
export { evaluateStage } from './stages/evaluate.js';
export { synthesizeStage } from './stages/synthesize.js';
export { sweepStage } from './stages/sweep.js';
export { distillStage } from './stages/distill.js';
export { trainStage } from './stages/train.js';
export { serveStage, serverWorkflow } from './stages/serve.js';
