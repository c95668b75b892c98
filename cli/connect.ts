import { Client, Connection } from '@temporalio/client';
import { openDb, type DbHandle } from '../db/client.js';
import { applyMigrations } from '../db/migrate.js';
import { loadRuntimeConfig, redactUrl, type RuntimeConfig } from '../runtime/config.js';

export { redactUrl };
import { ensureStack } from '../runtime/stack.js';
import { ConfigError } from './errors.js';

export interface Connected {
  cfg: RuntimeConfig;
  databaseUrl: string;
  temporalAddress: string;
  db: DbHandle;
  client: Client;
  /**
   * A client on the connection of a worker in this process that polls `cfg.taskQueue` (the
   * resident launcher's): runs are started through it with eager start. Absent in the CLI's process.
   */
  eagerStartClient?: Client;
  close(): Promise<void>;
}

/**
 * Connects the CLI to Postgres and Temporal: the user's servers when DATABASE_URL /
 * TEMPORAL_ADDRESS are set, otherwise the embedded stack (started on first use, left running).
 */
export async function connect(
  opts: { startWorker?: boolean; log?: (line: string) => void; workerEnv?: { name: string; usedBy: string }[] } = {},
): Promise<Connected> {
  const cfg = loadRuntimeConfig();
  let databaseUrl = cfg.databaseUrl;
  let temporalAddress = cfg.temporalAddress;
  // With both servers given (DATABASE_URL, TEMPORAL_ADDRESS) the user runs the workers; otherwise
  // the embedded stack is brought up, with a worker when the command needs one.
  if (!databaseUrl || !temporalAddress) {
    const info = await ensureStack(cfg, { worker: opts.startWorker ?? false, log: opts.log, workerEnv: opts.workerEnv });
    databaseUrl = info.databaseUrl;
    temporalAddress = info.temporalAddress;
  }
  const db = openDb(databaseUrl);
  // Both servers at once: neither needs the other, and a short command waits for the slower only.
  const [migrated, connected] = await Promise.allSettled([
    applyMigrations(db.db),
    Connection.connect({ address: temporalAddress, connectTimeout: '5 seconds' }),
  ]);
  if (migrated.status === 'rejected' || connected.status === 'rejected') {
    await db.close();
    if (connected.status === 'fulfilled') await connected.value.close();
    if (migrated.status === 'rejected') {
      throw new ConfigError(`cannot use Postgres at ${redactUrl(databaseUrl)}: ${(migrated.reason as Error).message}; check DATABASE_URL`);
    }
    const reason = (connected as PromiseRejectedResult).reason as Error;
    throw new ConfigError(`cannot reach Temporal at ${temporalAddress}: ${reason.message}; check TEMPORAL_ADDRESS or run \`judgeflow up\``);
  }
  const connection: Connection = connected.value;
  const client = new Client({ connection, namespace: cfg.namespace });
  return {
    cfg,
    databaseUrl,
    temporalAddress,
    db,
    client,
    async close() {
      await connection.close();
      await db.close();
    },
  };
}
