/**
 * The judgeflow worker: connects to the configured Temporal server and Postgres, applies
 * migrations, and runs every workflow and activity on one task queue. Start several on the
 * same queue to scale out; give an inference pool its own queue with --task-queue.
 * Shuts down gracefully on SIGINT/SIGTERM (in-flight activities finish or heartbeat out).
 */
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { openDb, type DbHandle } from './db/client.js';
import { applyMigrations } from './db/migrate.js';
import { createActivities } from './activities/index.js';
import { InferenceGateway } from './activities/inference/gateway.js';

const HERE = dirname(fileURLToPath(import.meta.url));
export const DEFAULT_WORKFLOWS_PATH = join(HERE, 'workflows', 'index.ts');

export interface WorkerConfig {
  temporalAddress: string;
  namespace: string;
  taskQueue: string;
  databaseUrl: string;
  /** Defaults to workflows/index.ts; tests add their own stage kinds here. */
  workflowsPath?: string;
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** Extra activities (test-only stage kinds). */
  extraActivities?: (handle: DbHandle) => Record<string, (...args: never[]) => Promise<unknown>>;
  maxConcurrentActivityTaskExecutions?: number;
  /** The worker's inference gateway (one per process: limits are shared by all its batches). */
  gateway?: InferenceGateway;
  /** Folder of the train stage's local jobs and outputs (default: JUDGEFLOW_STATE_DIR, else ./.judgeflow). */
  trainStateDir?: string;
}

export interface RunningWorker {
  worker: Worker;
  /** Resolves when the worker has stopped (after shutdown()). */
  run: Promise<void>;
  shutdown(): Promise<void>;
}

export async function startWorker(cfg: WorkerConfig): Promise<RunningWorker> {
  const handle = openDb(cfg.databaseUrl, { max: 20 });
  await applyMigrations(handle.db);
  const connection = await NativeConnection.connect({ address: cfg.temporalAddress });
  const gateway = cfg.gateway ?? new InferenceGateway();
  const activities = { ...createActivities({ db: handle.db, gateway, train: { stateDir: cfg.trainStateDir } }), ...(cfg.extraActivities?.(handle) ?? {}) };
  const worker = await Worker.create({
    connection,
    namespace: cfg.namespace,
    taskQueue: cfg.taskQueue,
    ...(cfg.workflowBundle ? { workflowBundle: cfg.workflowBundle } : { workflowsPath: cfg.workflowsPath ?? DEFAULT_WORKFLOWS_PATH }),
    activities,
    maxConcurrentActivityTaskExecutions: cfg.maxConcurrentActivityTaskExecutions ?? 50,
    shutdownGraceTime: '10 seconds',
  });
  const run = worker.run().finally(async () => {
    await connection.close();
    await handle.close();
  });
  return {
    worker,
    run,
    async shutdown() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await run;
    },
  };
}

export function workerConfigFromEnv(env: NodeJS.ProcessEnv = process.env, overrides: Partial<WorkerConfig> = {}): WorkerConfig {
  const missing = ['DATABASE_URL', 'TEMPORAL_ADDRESS'].filter((k) => !env[k] && !(k === 'DATABASE_URL' ? overrides.databaseUrl : overrides.temporalAddress));
  if (missing.length > 0) {
    throw new Error(`the worker needs ${missing.join(' and ')}; set them, or run \`judgeflow up\`, which starts a worker against the embedded stack`);
  }
  return {
    temporalAddress: env.TEMPORAL_ADDRESS!,
    databaseUrl: env.DATABASE_URL!,
    namespace: env.TEMPORAL_NAMESPACE ?? 'default',
    taskQueue: env.JUDGEFLOW_TASK_QUEUE ?? 'judgeflow',
    ...overrides,
  };
}

async function main(): Promise<void> {
  const cfg = workerConfigFromEnv();
  const w = await startWorker(cfg);
  console.log(`judgeflow worker: task queue "${cfg.taskQueue}" on ${cfg.temporalAddress} (namespace ${cfg.namespace})`);
  await w.run;
  console.log('judgeflow worker: stopped');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err) => {
    console.error(`judgeflow worker: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
