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
  /**
   * Prebuilt workflow code. Default, when no workflowsPath is given: the bundle named by
   * JUDGEFLOW_WORKFLOW_BUNDLE (the compiled entry points set it to dist/workflow-bundle.js, built
   * with the sources by `npm run build`); without it, webpack bundles workflowsPath at start.
   */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** Extra activities (test-only stage kinds). */
  extraActivities?: (handle: DbHandle) => Record<string, (...args: never[]) => Promise<unknown>>;
  maxConcurrentActivityTaskExecutions?: number;
  /** The worker's inference gateway (one per process: limits are shared by all its batches). */
  gateway?: InferenceGateway;
  /** Folder of the train stage's local jobs and outputs, and of serve stages' server logs (default: JUDGEFLOW_STATE_DIR, else ./.judgeflow). */
  trainStateDir?: string;
}

export interface RunningWorker {
  worker: Worker;
  /** The worker's connection to Temporal (a Client on it can start workflows eagerly on this worker). */
  connection: NativeConnection;
  /** Resolves when the worker has stopped (after shutdown()). */
  run: Promise<void>;
  shutdown(): Promise<void>;
}

export async function startWorker(cfg: WorkerConfig): Promise<RunningWorker> {
  // A few connections stay open between jobs: a short job's steps (run records, the claim, the first
  // chunk's rows) each wait for a new one otherwise, once the pool has closed its idle ones.
  const handle = openDb(cfg.databaseUrl, { max: 20, min: 4 });
  await applyMigrations(handle.db);
  const connection = await NativeConnection.connect({ address: cfg.temporalAddress });
  const gateway = cfg.gateway ?? new InferenceGateway();
  const activities = {
    ...createActivities({ db: handle.db, gateway, train: { stateDir: cfg.trainStateDir }, serve: { stateDir: cfg.trainStateDir } }),
    ...(cfg.extraActivities?.(handle) ?? {}),
  };
  const prebuilt = process.env.JUDGEFLOW_WORKFLOW_BUNDLE;
  const workflowBundle = cfg.workflowBundle ?? (cfg.workflowsPath === undefined && prebuilt ? { codePath: prebuilt } : undefined);
  const worker = await Worker.create({
    connection,
    namespace: cfg.namespace,
    taskQueue: cfg.taskQueue,
    ...(workflowBundle ? { workflowBundle } : { workflowsPath: cfg.workflowsPath ?? DEFAULT_WORKFLOWS_PATH }),
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
    connection,
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

/**
 * The worker process: `node bin/worker.mjs` (what `judgeflow up` starts; compiled when dist/ is
 * fresh) or `node --import tsx worker.ts`. Configuration from the environment; exits 1 on failure.
 */
export async function main(): Promise<void> {
  try {
    const cfg = workerConfigFromEnv();
    const w = await startWorker(cfg);
    const bundle = process.env.JUDGEFLOW_WORKFLOW_BUNDLE;
    const workflows = bundle ? `prebuilt workflow bundle ${bundle}` : 'workflows bundled from the sources at start';
    console.log(`judgeflow worker: task queue "${cfg.taskQueue}" on ${cfg.temporalAddress} (namespace ${cfg.namespace}; ${workflows})`);
    const { startWorkerLauncher } = await import('./runtime/launcher.js');
    const launcher = await startWorkerLauncher({ ...cfg, workerConnection: w.connection, log: (line) => console.log(`judgeflow worker: ${line}`) });
    await w.run;
    await launcher?.close();
    console.log('judgeflow worker: stopped');
  } catch (err) {
    console.error(`judgeflow worker: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) void main();
