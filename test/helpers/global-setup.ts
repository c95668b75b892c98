/**
 * Brings up what the tests need, loudly: a fresh Postgres database (on DATABASE_URL's server,
 * default 127.0.0.1:5432) and a Temporal dev server (TEMPORAL_ADDRESS, or one started here from
 * the `temporal` binary). A missing server or binary fails the whole run; nothing is skipped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openDb } from '../../db/client.js';
import { applyMigrations } from '../../db/migrate.js';
import { TEST_ITEMS_DDL } from './test-activities.js';
import { findTemporalCli } from '../../runtime/temporal-cli.js';
import { freePort, waitForTcp } from '../../runtime/net.js';

let temporal: ChildProcess | undefined;
let stateDir: string | undefined;

export default async function setup({ provide }: { provide: (k: string, v: unknown) => void }) {
  const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const dbName = `judgeflow_test_${Date.now()}_${process.pid}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(`tests need PostgreSQL at ${adminUrl} (set DATABASE_URL): ${(err as Error).message}`);
  }
  await admin.query(`create database "${dbName}"`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  const testDbUrl = url.toString();
  const handle = openDb(testDbUrl);
  await applyMigrations(handle.db);
  // The test-only table, once: files run in parallel, and concurrent `create table if not exists` race.
  await handle.pool.query(TEST_ITEMS_DDL);
  await handle.close();
  process.env.JF_TEST_DATABASE_URL = testDbUrl;

  let address = process.env.TEMPORAL_ADDRESS;
  if (!address) {
    const bin = findTemporalCli();
    const port = await freePort();
    stateDir = mkdtempSync(join(tmpdir(), 'jf-test-temporal-'));
    temporal = spawn(
      bin,
      ['server', 'start-dev', '--headless', '--port', String(port), '--db-filename', join(stateDir, 'temporal.db'), '--log-level', 'error'],
      { stdio: 'ignore' },
    );
    address = `127.0.0.1:${port}`;
    await waitForTcp('127.0.0.1', port, 30_000);
  }
  process.env.JF_TEST_TEMPORAL_ADDRESS = address;
  provide('databaseUrl', testDbUrl);
  provide('temporalAddress', address);

  return async () => {
    temporal?.kill('SIGTERM');
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
    const a = new pg.Client({ connectionString: adminUrl });
    await a.connect();
    await a.query(`drop database if exists "${dbName}" with (force)`);
    await a.end();
  };
}
