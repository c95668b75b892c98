import { loadRuntimeConfig } from '../../runtime/config.js';
import { ensureStack } from '../../runtime/stack.js';
import { startWorker } from '../../worker.js';
import { parseFlags } from '../args.js';
import { EXIT } from '../errors.js';

const USAGE = `usage: judgeflow worker [--task-queue Q] [--max-activities N]

Runs a worker in the foreground against DATABASE_URL / TEMPORAL_ADDRESS (or the embedded stack).
Start several, on several machines, to scale out; a stage with \`task_queue: gpu-a\` runs its
inference on the workers started with --task-queue gpu-a. Stops gracefully on SIGINT/SIGTERM.`;

export async function workerCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { 'task-queue': { type: 'string' }, 'max-activities': { type: 'string' } }, USAGE);
  const cfg = loadRuntimeConfig();
  let { databaseUrl, temporalAddress } = cfg;
  if (!databaseUrl || !temporalAddress) {
    const info = await ensureStack(cfg, { worker: false });
    databaseUrl = info.databaseUrl;
    temporalAddress = info.temporalAddress;
  }
  const taskQueue = values['task-queue'] ?? cfg.taskQueue;
  const w = await startWorker({
    databaseUrl,
    temporalAddress,
    namespace: cfg.namespace,
    taskQueue,
    maxConcurrentActivityTaskExecutions: values['max-activities'] ? Number(values['max-activities']) : undefined,
  });
  // The identity is what Temporal records for every task this worker runs (Web UI, history).
  console.error(`judgeflow worker: polling task queue "${taskQueue}" on ${temporalAddress} as ${w.worker.options.identity}`);
  await w.run;
  return EXIT.ok;
}
