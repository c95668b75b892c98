import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { Client, Connection } from '@temporalio/client';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { openDb, type DbHandle } from '../../db/client.js';
import { startWorker, type RunningWorker } from '../../worker.js';
import { createTestActivities } from './test-activities.js';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TEST_WORKFLOWS = join(REPO, 'test', 'helpers', 'workflows.ts');

export function testDatabaseUrl(): string {
  const url = process.env.JF_TEST_DATABASE_URL;
  if (!url) throw new Error('JF_TEST_DATABASE_URL is not set: run the tests with `npm test` (vitest global setup)');
  return url;
}

export function testTemporalAddress(): string {
  const addr = process.env.JF_TEST_TEMPORAL_ADDRESS;
  if (!addr) throw new Error('JF_TEST_TEMPORAL_ADDRESS is not set: run the tests with `npm test` (vitest global setup)');
  return addr;
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;
/** The test workflow bundle, built once per test file. */
export function testBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath: TEST_WORKFLOWS, logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} } as never });
  return bundle;
}

/** The test database (migrated, with the test-only table, by the global setup). */
export async function openTestDb(): Promise<DbHandle> {
  return openDb(testDatabaseUrl());
}

export async function testClient(address = testTemporalAddress()): Promise<{ client: Client; close(): Promise<void> }> {
  const connection = await Connection.connect({ address });
  return { client: new Client({ connection }), close: () => connection.close() };
}

export async function startTestWorker(taskQueue: string, address = testTemporalAddress()): Promise<RunningWorker> {
  return startWorker({
    temporalAddress: address,
    namespace: 'default',
    taskQueue,
    databaseUrl: testDatabaseUrl(),
    workflowBundle: await testBundle(),
    extraActivities: (h) => createTestActivities(h.db),
  });
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
}

/** Experiment, run and stage rows of experiment `name` (other test files write their own experiments at the same time). */
export async function experimentRowCounts(db: DbHandle, name: string): Promise<{ e: number; r: number; s: number }> {
  const r = await db.pool.query(
    `select (select count(*) from experiments where name = $1)::int as e,
            (select count(*) from runs r join experiments x on x.id = r.experiment_id where x.name = $1)::int as r,
            (select count(*) from stages s join runs r on r.id = s.run_id join experiments x on x.id = r.experiment_id where x.name = $1)::int as s`,
    [name],
  );
  return r.rows[0];
}
