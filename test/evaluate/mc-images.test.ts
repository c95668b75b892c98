/**
 * The evaluate stage on the generic mc-jsonl format with images and K = 3 candidates: images
 * travel as content-addressed blobs and reach the server as data URLs; bad rows are reported.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { and, eq } from 'drizzle-orm';
import type { Client } from '@temporalio/client';
import { launchRun } from '../../cli/launch.js';
import { artifacts, inferenceRequests, judgments, metrics, requestBodies } from '../../db/schema/index.js';
import type { SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { uniqueName } from '../helpers/env.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { specFromObject } from '../helpers/spec.js';
import type { DbHandle } from '../../db/client.js';

// Distinct tiny PNG-signed files: only their bytes (and so their content hashes) matter here.
const png = (i: number) =>
  Buffer.concat([
    Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex'),
    Buffer.from([0, 0, 0, 1, 0x74, 0x45, 0x58, 0x74, i & 0xff, 0, 0, 0, 0]),
  ]);

const TQ = uniqueName('mc');
let db: DbHandle;
let sim: SimHandle;
let client: Client;
let stack: TestStack;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'jf-mc-'));
  mkdirSync(join(dir, 'img'));
  const lines: string[] = [];
  const truth: string[] = [];
  for (let i = 0; i < 60; i++) {
    writeFileSync(join(dir, 'img', `${i}.png`), png(i));
    const candidates = [
      `Candidate one for item ${i}: the chart peaks in 2019.`,
      `Candidate two for item ${i}: the chart peaks in 2021.`,
      `Candidate three for item ${i}: the chart is flat.`,
    ];
    const best = i % 3;
    lines.push(
      JSON.stringify({
        id: `chart-${i}`,
        query: `Question ${i}: when does the chart peak?`,
        image: `img/${i}.png`,
        candidates,
        best,
        category: i % 2 ? 'odd' : 'even',
      }),
    );
    truth.push(JSON.stringify({ candidates, best }));
  }
  lines.splice(10, 0, JSON.stringify({ id: 'broken', query: 'q', candidates: ['only one'], best: 0 }));
  lines.splice(20, 0, JSON.stringify({ id: 'no-image', query: 'q', image: 'img/missing.png', candidates: ['a', 'b'], best: 0 }));
  writeFileSync(join(dir, 'mc.jsonl'), lines.join('\n') + '\n');
  writeFileSync(join(dir, 'truth.jsonl'), truth.join('\n') + '\n');
  stack = await startTestStack(TQ, { seed: 4, truth: join(dir, 'truth.jsonl'), models: { judge: { behaviour: 'judge', accuracy: 1 } } });
  ({ db, sim, client } = stack);
});
afterAll(() => stack?.close());

describe('evaluate on mc-jsonl with images, K = 3', () => {
  it('judges every cyclic shift, sends images as data URLs, reports the skipped rows', async () => {
    const loaded = await specFromObject({
      name: uniqueName('mc'),
      endpoints: { judge: { base_url: sim.url, model: 'judge', concurrency: 8 } },
      datasets: { charts: { path: join(dir, 'mc.jsonl'), format: 'mc-jsonl', images: dir } },
      stages: [{ id: 'eval', uses: 'evaluate', with: { dataset: 'charts', judge: 'judge', positions: 'swap', temperature: 0, bootstrap: 50, chunk_size: 9 } }],
    });
    expect(loaded.warnings.join('\n')).toMatch(/datasets\.charts: 2 row\(s\) skipped: line 11: .*; line 21: .*missing\.png/);
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
    await client.workflow.getHandle(runId).result();

    const reqs = await db.db
      .select()
      .from(inferenceRequests)
      .where(and(eq(inferenceRequests.runId, runId), eq(inferenceRequests.stageId, 'eval')));
    expect(reqs).toHaveLength(180);
    // chunk_size counts requests: 3 views x 1 sample per item, so 3 items (9 requests) a chunk.
    const history = await client.workflow.getHandle(`${runId}/eval`).fetchHistory();
    const prepares = history.events!.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'prepareEvaluationChunk');
    expect(prepares).toHaveLength(20);
    // Image parts are stored as references to blobs, never bytes.
    const [stored] = await db.db.select().from(requestBodies).where(eq(requestBodies.hash, reqs[0]!.bodyHash));
    const body = JSON.stringify(stored!.body);
    expect(body).toMatch(/"hash":"[0-9a-f]{64}","mime":"image\/png","type":"image_ref"/);
    expect(body).not.toMatch(/base64/);
    expect(sim.stats().images).toBeGreaterThanOrEqual(180);

    const js = await db.db.select().from(judgments).where(eq(judgments.runId, runId));
    const perms = new Map<string, Set<string>>();
    for (const j of js) perms.set(j.itemKey, (perms.get(j.itemKey) ?? new Set()).add(j.permutation.join('')));
    expect([...perms.values()].every((p) => [...p].sort().join(',') === '012,120,201')).toBe(true);

    const rows = await db.db.select().from(metrics).where(eq(metrics.runId, runId));
    const acc = rows.find((r) => r.metric === 'accuracy' && r.scope === 'overall' && r.policy === 'excluded')!;
    expect(acc.value).toBe(1);
    expect(acc.n).toBe(60);
    expect(rows.find((r) => r.metric === 'accuracy' && r.scope === 'category:odd' && r.policy === 'excluded')!.n).toBe(30);
    const [ds] = await db.db
      .select()
      .from(artifacts)
      .where(eq(artifacts.source, join(dir, 'mc.jsonl')));
    expect(ds!.issues.map((i) => i.line)).toEqual([11, 21]);
    expect(ds!.kind).toBe('mc-items');
    expect(ds!.summary).toMatchObject({ source_rows: 62, imported: 60, skipped: 2 });
  });
});
