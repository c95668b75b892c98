/**
 * Records histories of the evaluate stage (and its experiment) and of `runInference` for the replay
 * test, on a real Temporal server, Postgres and the simulator. Runs in any checkout of this
 * repository, so it can record with an older commit's workflow code (see test/replay/README.md):
 *   DATABASE_URL=… TEMPORAL_ADDRESS=… npx tsx test/replay/record-stage-histories.ts <out dir> <case>…
 * A case is `evaluate:<items>:<chunk_size>:<name>` (an experiment with one evaluate stage over
 * <items> two-candidate items, positions none, writes <name>.json (the stage) and
 * <name>-experiment.json), `inference:<rows>:<chunk size>:<name>` (runInference over <rows> requests)
 * `distill:<items>:<max_attempts>:<name>[:<chunk_size>]` (an experiment with one distill stage over <items>
 * two-option items sharing 4 images, a reasoner right half the time; writes <name>.json, the
 * stage's history) or `reuse:<items>:<name>` (stage reuse: two runs of one experiment with one slow evaluate stage,
 * the second launched while the first's stage runs: it waits, then reuses; writes <name>-run.json
 * and <name>-reused.json, the two experiments' histories).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import type { temporal } from '@temporalio/proto';
import { launchRun } from '../../cli/launch.js';
import { openDb } from '../../db/client.js';
import { applyMigrations } from '../../db/migrate.js';
import { startSimulator } from '../../sim/server.js';
import '../../spec/builtin.js';
import { startWorker } from '../../worker.js';
import { REPO, testClient, uniqueName } from '../helpers/env.js';
import { solidPng } from '../helpers/png.js';
import { specFromObject } from '../helpers/spec.js';
import { TEST_ITEMS_DDL } from '../helpers/test-activities.js';
import { batchRows, endpoint, prepareBatch } from '../inference/helpers.js';

const [outDir, ...cases] = process.argv.slice(2);
if (!outDir || cases.length === 0) throw new Error('usage: record-stage-histories.ts <out dir> <case>…');
mkdirSync(outDir, { recursive: true });
const databaseUrl = process.env.DATABASE_URL!;
const address = process.env.TEMPORAL_ADDRESS!;
const db = openDb(databaseUrl);
await applyMigrations(db.db);
await db.pool.query(TEST_ITEMS_DDL);

const dir = mkdtempSync(join(tmpdir(), 'jf-record-'));
const candidates = (i: number) => [`Answer A to question ${i}: it is ${i}.`, `Answer B to question ${i}: it is ${i + 1}.`];
const truthLines: string[] = [];
for (let i = 0; i < 2000; i++) truthLines.push(JSON.stringify({ candidates: candidates(i), best: i % 2 }));
writeFileSync(join(dir, 'truth.jsonl'), truthLines.join('\n') + '\n');
const sim = await startSimulator({
  seed: 5,
  truth: join(dir, 'truth.jsonl'),
  models: {
    judge: { behaviour: 'judge', accuracy: 0.9 },
    'judge-slow': { behaviour: 'judge', accuracy: 0.9, latency: { kind: 'fixed', ms: 250 } },
    policy: { behaviour: 'policy' },
    captioner: { behaviour: 'captioner', output_tokens: 20 },
    reasoner: { behaviour: 'reasoner', accuracy: 0.5, output_tokens: 60 },
  },
});
const tq = uniqueName('record-stages');
const worker = await startWorker({
  databaseUrl,
  temporalAddress: address,
  namespace: 'default',
  taskQueue: tq,
  workflowsPath: join(REPO, 'test', 'replay', 'workflows.ts'),
});
const { client, close } = await testClient(address);

function write(name: string, history: temporal.api.history.v1.IHistory) {
  const file = join(outDir!, `${name}.json.gz`);
  writeFileSync(file, gzipSync(historyToJSON(history)));
  console.log(`wrote ${file} (${history.events?.length} events)`);
}

try {
  for (const c of cases) {
    const [what, n, size, name, chunk] = c.split(':');
    const count = Number(n);
    if (what === 'evaluate') {
      const data = join(dir, `${name}.jsonl`);
      const lines = Array.from({ length: count }, (_, i) =>
        JSON.stringify({ id: `q-${i}`, query: `Question ${i}: which answer is right?`, candidates: candidates(i), best: i % 2, category: i % 3 ? 'a' : 'b' }),
      );
      writeFileSync(data, lines.join('\n') + '\n');
      const loaded = await specFromObject({
        name: uniqueName(name!),
        seed: 11,
        endpoints: { judge: { base_url: sim.url, model: 'judge', concurrency: 16 } },
        datasets: { qa: { path: data, format: 'mc-jsonl' } },
        stages: [
          { id: 'eval', uses: 'evaluate', with: { dataset: 'qa', judge: 'judge', positions: 'none', temperature: 0, bootstrap: 10, chunk_size: Number(size) } },
        ],
      });
      const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
      await client.workflow.getHandle(runId).result();
      write(name!, await client.workflow.getHandle(`${runId}/eval`).fetchHistory());
      write(`${name}-experiment`, await client.workflow.getHandle(runId).fetchHistory());
    } else if (what === 'reuse') {
      // reuse:<items>:<name>
      const rname = size!;
      const data = join(dir, `${rname}.jsonl`);
      const lines = Array.from({ length: count }, (_, i) =>
        JSON.stringify({ id: `q-${i}`, query: `Question ${i}: which answer is right?`, candidates: candidates(i), best: i % 2, category: 'a' }),
      );
      writeFileSync(data, lines.join('\n') + '\n');
      const loaded = await specFromObject({
        name: uniqueName(rname),
        seed: 11,
        // One request at a time, 250 ms each: the stage runs long enough for the second run to find it running.
        endpoints: { judge: { base_url: sim.url, model: 'judge-slow', concurrency: 1 } },
        datasets: { qa: { path: data, format: 'mc-jsonl' } },
        stages: [{ id: 'eval', uses: 'evaluate', with: { dataset: 'qa', judge: 'judge', positions: 'none', temperature: 0, bootstrap: 10 } }],
      });
      const first = `${loaded.spec.name}-first`;
      const second = `${loaded.spec.name}-second`;
      await launchRun({ loaded, db: db.db, client, taskQueue: tq, runId: first });
      for (;;) {
        const r = await db.pool.query<{ status: string }>("select status from stages where run_id = $1 and stage_id = 'eval'", [first]);
        if (r.rows[0]?.status === 'running') break;
        await new Promise((res) => setTimeout(res, 50));
      }
      await launchRun({ loaded, db: db.db, client, taskQueue: tq, runId: second });
      await client.workflow.getHandle(first).result();
      await client.workflow.getHandle(second).result();
      const reused = await db.pool.query<{ reused_from_run: string | null }>("select reused_from_run from stages where run_id = $1 and stage_id = 'eval'", [
        second,
      ]);
      if (reused.rows[0]?.reused_from_run !== first) throw new Error(`the second run did not reuse the first's stage: ${JSON.stringify(reused.rows)}`);
      write(`${rname}-run`, await client.workflow.getHandle(first).fetchHistory());
      write(`${rname}-reused`, await client.workflow.getHandle(second).fetchHistory());
    } else if (what === 'distill') {
      // distill:<items>:<max_attempts>:<name>: 2-option items over 4 images, a reasoner right half the time.
      const data = join(dir, `${name}.jsonl`);
      mkdirSync(join(dir, 'img'), { recursive: true });
      for (let i = 0; i < 4; i++) writeFileSync(join(dir, 'img', `${i}.png`), solidPng(1, [i * 60, 9, 7]));
      const lines = Array.from({ length: count }, (_, i) =>
        JSON.stringify({ id: `q-${i}`, query: `Question ${i}: which answer is right?`, image: `img/${i % 4}.png`, candidates: candidates(i), best: i % 2 }),
      );
      writeFileSync(data, lines.join('\n') + '\n');
      const ep = (model: string) => ({ base_url: sim.url, model, concurrency: 16 });
      const loaded = await specFromObject({
        name: uniqueName(name!),
        seed: 11,
        endpoints: { captioner: ep('captioner'), reasoner: ep('reasoner') },
        datasets: { items: { path: data, format: 'mc-jsonl', images: dir } },
        stages: [
          {
            id: 'distill',
            uses: 'distill',
            with: {
              items: 'items',
              captioner: 'captioner',
              reasoner: 'reasoner',
              hint: false,
              max_attempts: Number(size),
              ...(chunk ? { chunk_size: Number(chunk) } : {}),
            },
          },
        ],
      });
      const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
      await client.workflow.getHandle(runId).result();
      write(name!, await client.workflow.getHandle(`${runId}/distill`).fetchHistory());
    } else if (what === 'inference') {
      const runId = uniqueName(name!);
      const ep = endpoint(sim.url, { concurrency: 16 });
      const range = await prepareBatch(db.db, batchRows(runId, 'gen', count, { endpoint: 'ep' }), ep);
      const handle = await client.workflow.start('inferenceTestWorkflow', {
        taskQueue: tq,
        workflowId: runId,
        args: [{ runId, stageId: 'gen', endpointName: 'ep', endpoint: ep, ...range, total: range.count, chunkSize: Number(size), parallel: 4 }],
      });
      await handle.result();
      write(name!, await handle.fetchHistory());
    } else {
      throw new Error(`unknown case "${c}"`);
    }
  }
} finally {
  await close();
  await worker.shutdown();
  await sim.close();
  await db.close();
}
