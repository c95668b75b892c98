/** A test worker in its own process, so a test can kill -9 it. Env: DATABASE_URL, TEMPORAL_ADDRESS, TASK_QUEUE. */
import { startWorker } from '../../worker.js';
import { createTestActivities } from './test-activities.js';
import { TEST_WORKFLOWS } from './env.js';

const w = await startWorker({
  temporalAddress: process.env.TEMPORAL_ADDRESS!,
  databaseUrl: process.env.DATABASE_URL!,
  namespace: 'default',
  taskQueue: process.env.TASK_QUEUE!,
  workflowsPath: TEST_WORKFLOWS,
  extraActivities: (h) => createTestActivities(h.db),
});
console.log('worker-ready');
await w.run;
