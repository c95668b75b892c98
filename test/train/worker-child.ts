/** A train-test worker in its own process. Env: DATABASE_URL, TEMPORAL_ADDRESS, TASK_QUEUE, JUDGEFLOW_STATE_DIR. */
import { startWorker } from '../../worker.js';
import { createTestActivities } from '../helpers/test-activities.js';
import { createTrainTestActivities } from './activities.js';
import { TRAIN_WORKFLOWS } from './helpers.js';

const w = await startWorker({
  temporalAddress: process.env.TEMPORAL_ADDRESS!,
  databaseUrl: process.env.DATABASE_URL!,
  namespace: 'default',
  taskQueue: process.env.TASK_QUEUE!,
  workflowsPath: TRAIN_WORKFLOWS,
  extraActivities: (h) => ({ ...createTestActivities(h.db), ...createTrainTestActivities(h.db) }),
  trainStateDir: process.env.JUDGEFLOW_STATE_DIR,
});
console.log('worker-ready');
await w.run;
