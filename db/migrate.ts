import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import type { Db } from './client.js';

export const MIGRATIONS_FOLDER = join(dirname(fileURLToPath(import.meta.url)), 'migrations');

/**
 * Applies committed migrations (idempotent). Concurrent callers (worker + CLI starting together)
 * serialize on an advisory lock so neither sees a half-applied schema. `migrationsFolder` is for
 * tests of an upgrade (a folder holding the older migrations only).
 */
export async function applyMigrations(db: Db, migrationsFolder = MIGRATIONS_FOLDER): Promise<void> {
  const client = await db.$client.connect();
  try {
    await client.query('select pg_advisory_lock(724311)');
    try {
      await migrate(db, { migrationsFolder });
    } finally {
      await client.query('select pg_advisory_unlock(724311)');
    }
  } finally {
    client.release();
  }
}
