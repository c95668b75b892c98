/**
 * An inference worker in its own process, so a test can kill -9 it mid-batch.
 * Env: DATABASE_URL, TEMPORAL_ADDRESS, TASK_QUEUE, BUNDLE_PATH (a prebuilt workflow bundle).
 * Prints `worker-ready` once polling.
 */
import { NativeConnection, Worker } from '@temporalio/worker';
import { openDb } from '../../db/client.js';
import { createInferenceActivities, InferenceGateway } from '../../activities/inference/index.js';

const need = (k: string) => {
  const v = process.env[k];
  if (!v) throw new Error(`worker-child needs ${k}`);
  return v;
};
const handle = openDb(need('DATABASE_URL'));
const connection = await NativeConnection.connect({ address: need('TEMPORAL_ADDRESS') });
const gateway = new InferenceGateway({ backoff: { baseMs: 100, maxMs: 2000 } });
const worker = await Worker.create({
  connection,
  taskQueue: need('TASK_QUEUE'),
  workflowBundle: { codePath: need('BUNDLE_PATH') },
  activities: createInferenceActivities({ db: handle.db, gateway }),
  // After a kill -9 the next worker picks the workflow up sooner.
  stickyQueueScheduleToStartTimeout: '2 seconds',
});
const run = worker.run();
console.log('worker-ready');
await run;
await connection.close();
await handle.close();
