import { loadRuntimeConfig } from '../../runtime/config.js';
import { ensureStack } from '../../runtime/stack.js';
import { startWorkerLauncher } from '../../runtime/launcher.js';
import { startWorker } from '../../worker.js';
import { parseFlags } from '../args.js';
import { ConfigError, EXIT, UsageError } from '../errors.js';

const USAGE = `usage: judgeflow worker [--task-queue Q] [--max-activities N]

Runs a worker in the foreground against DATABASE_URL / TEMPORAL_ADDRESS (or the embedded stack).
Start several, on several machines, to scale out; a stage with \`task_queue: gpu-a\` runs its
inference on the workers started with --task-queue gpu-a. Stops gracefully on SIGINT/SIGTERM.`;

export async function workerCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { 'task-queue': { type: 'string' }, 'max-activities': { type: 'string' } }, USAGE);
  const flagQueue = values['task-queue'];
  if (flagQueue !== undefined && !/^[A-Za-z0-9._-]+$/.test(flagQueue)) {
    throw new UsageError(`--task-queue "${flagQueue}": a task queue name uses letters, digits, ".", "_" and "-"`);
  }
  const cfg = loadRuntimeConfig(process.env, { taskQueue: flagQueue });
  let { databaseUrl, temporalAddress } = cfg;
  // One server named and not the other is a worker meant for a cluster that would start a local
  // Postgres or Temporal of its own instead: refuse.
  if (Boolean(databaseUrl) !== Boolean(temporalAddress)) {
    const [given, missing] = databaseUrl ? ['DATABASE_URL', 'TEMPORAL_ADDRESS'] : ['TEMPORAL_ADDRESS', 'DATABASE_URL'];
    throw new ConfigError(`${given} is set but ${missing} is not; set ${missing} too (or neither, for the local stack)`);
  }
  if (!databaseUrl || !temporalAddress) {
    const info = await ensureStack(cfg, { worker: false });
    databaseUrl = info.databaseUrl;
    temporalAddress = info.temporalAddress;
  }
  const { taskQueue } = cfg;
  const w = await startWorker({
    databaseUrl,
    temporalAddress,
    namespace: cfg.namespace,
    taskQueue,
    maxConcurrentActivityTaskExecutions: values['max-activities'] ? Number(values['max-activities']) : undefined,
  });
  // The identity is what Temporal records for every task this worker runs (Web UI, history).
  console.error(`judgeflow worker: polling task queue "${taskQueue}" on ${temporalAddress} as ${w.worker.options.identity}`);
  const launcher = await startWorkerLauncher({
    databaseUrl,
    temporalAddress,
    namespace: cfg.namespace,
    taskQueue,
    workerConnection: w.connection,
    log: (line) => console.error(`judgeflow worker: ${line}`),
  });
  await w.run;
  await launcher?.close();
  return EXIT.ok;
}
