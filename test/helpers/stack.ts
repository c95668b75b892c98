import type { Client } from '@temporalio/client';
import type { DbHandle } from '../../db/client.js';
import type { SimConfigInput } from '../../sim/config.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import type { RunningWorker } from '../../worker.js';
import { openTestDb, startTestWorker, testClient } from './env.js';

/** What most end-to-end test files start: the test database, a simulator, a worker on their own task queue, a client. */
export interface TestStack {
  db: DbHandle;
  sim: SimHandle;
  worker: RunningWorker;
  client: Client;
  /** Stops the worker, closes the client, the simulator and the database pool. */
  close(): Promise<void>;
}

export async function startTestStack(taskQueue: string, simulator: SimConfigInput): Promise<TestStack> {
  const db = await openTestDb();
  const sim = await startSimulator(simulator);
  const worker = await startTestWorker(taskQueue);
  const { client, close: closeClient } = await testClient();
  return {
    db,
    sim,
    worker,
    client,
    async close() {
      await worker.shutdown();
      await closeClient();
      await sim.close();
      await db.close();
    },
  };
}
