import type { Client } from '@temporalio/client';
import type { DbHandle } from '../../db/client.js';
import type { SimConfigInput } from '../../sim/config.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import type { RunningWorker } from '../../worker.js';
import { openTestDb, startTestWorker, testClient } from './env.js';

/** The test database, a worker on the file's own task queue, a client. */
export interface WorkerStack {
  db: DbHandle;
  worker: RunningWorker;
  client: Client;
  /** Stops the worker, closes the client (and the simulator, if any) and the database pool. */
  close(): Promise<void>;
}

/** What most end-to-end test files start: a WorkerStack and a simulator. */
export interface TestStack extends WorkerStack {
  sim: SimHandle;
}

export async function startWorkerStack(taskQueue: string): Promise<WorkerStack> {
  const db = await openTestDb();
  const worker = await startTestWorker(taskQueue);
  const { client, close: closeClient } = await testClient();
  return {
    db,
    worker,
    client,
    async close() {
      await worker.shutdown();
      await closeClient();
      await db.close();
    },
  };
}

export async function startTestStack(taskQueue: string, simulator: SimConfigInput): Promise<TestStack> {
  const sim = await startSimulator(simulator);
  const stack = await startWorkerStack(taskQueue);
  return {
    ...stack,
    sim,
    async close() {
      await stack.close();
      await sim.close();
    },
  };
}
