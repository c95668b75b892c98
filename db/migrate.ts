import { readFile } from 'node:fs/promises';
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
  if (await upToDate(db, migrationsFolder)) return;
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

/**
 * Whether the database already has every migration of the folder, by drizzle's own rule (it applies
 * the migrations newer than the last one recorded): one query instead of the lock, the folder's
 * files and drizzle's statements, for every command that connects. Any doubt (no journal, no
 * migrations table yet) answers no, and the full path runs.
 */
async function upToDate(db: Db, migrationsFolder: string): Promise<boolean> {
  try {
    const journal = JSON.parse(await readFile(join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as { entries: { when: number }[] };
    if (journal.entries.length === 0) return false;
    const newest = Math.max(...journal.entries.map((e) => e.when));
    const res = await db.$client.query<{ last: string | null }>('select max(created_at) as last from drizzle.__drizzle_migrations');
    const last = res.rows[0]?.last;
    return last !== null && last !== undefined && Number(last) >= newest;
  } catch {
    return false;
  }
}
