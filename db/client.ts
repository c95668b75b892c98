import pg from 'pg';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import * as schema from './schema/index.js';

export type Db = NodePgDatabase<typeof schema> & { $client: pg.Pool };

export interface DbHandle {
  db: Db;
  pool: pg.Pool;
  close(): Promise<void>;
}

/**
 * Opens a pooled connection; callers own `close()`. `min`: connections kept open when idle (others
 * close after 10 s idle), so a long-lived process's next short job does not open them again.
 */
export function openDb(url: string, options: { max?: number; min?: number } = {}): DbHandle {
  const pool = new pg.Pool({ connectionString: url, max: options.max ?? 10, min: options.min ?? 0 });
  // An idle client losing its server (restart) must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  const db = drizzle(pool, { schema, casing: 'snake_case' }) as Db;
  return { db, pool, close: () => pool.end() };
}
