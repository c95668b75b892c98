/**
 * Records the committed replay fixture: runs a diamond experiment (test stage kinds) on a real
 * Temporal server and writes the experiment workflow's history as JSON.
 *   DATABASE_URL=… TEMPORAL_ADDRESS=… npx tsx test/replay/record-history.ts
 * Re-record only for a deliberate, versioned (patched) change of the workflow.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { launchRun } from '../../cli/launch.js';
import { openDb } from '../../db/client.js';
import { applyMigrations } from '../../db/migrate.js';
import { startWorker } from '../../worker.js';
import { REPO, TEST_WORKFLOWS, testClient, uniqueName } from '../helpers/env.js';
import { diamond, specFromObject } from '../helpers/spec.js';
import { createTestActivities, TEST_ITEMS_DDL } from '../helpers/test-activities.js';

const databaseUrl = process.env.DATABASE_URL!;
const address = process.env.TEMPORAL_ADDRESS!;
const db = openDb(databaseUrl);
await applyMigrations(db.db);
await db.pool.query(TEST_ITEMS_DDL);
const tq = uniqueName('record');
const worker = await startWorker({
  databaseUrl,
  temporalAddress: address,
  namespace: 'default',
  taskQueue: tq,
  workflowsPath: TEST_WORKFLOWS,
  extraActivities: (h) => createTestActivities(h.db),
});
const { client, close } = await testClient(address);
const spec = diamond('replay-diamond', 20);
spec.stages.push({ id: 'broken', uses: 'test-work', needs: ['a'], with: { fail: 'recorded failure' } } as never);
const { runId } = await launchRun({ loaded: await specFromObject(spec), db: db.db, client, taskQueue: tq });
const handle = client.workflow.getHandle(runId);
await handle.result().catch(() => undefined);
const history = await handle.fetchHistory();
const out = join(REPO, 'test', 'replay', 'histories', 'experiment-diamond.json');
writeFileSync(out, historyToJSON(history));
console.log(`wrote ${out} (${history.events?.length} events)`);
await close();
await worker.shutdown();
await db.close();
