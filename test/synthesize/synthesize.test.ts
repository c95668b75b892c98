/**
 * The `synthesize` stage end to end on easy-vqa (the PyPI package's files): a simulated negatives
 * writer over HTTP, Temporal, Postgres; then `evaluate` on the items it made, read through `from:`.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../activities/datasets/mc.js';
import { exportArtifact } from '../../activities/datasets/export.js';
import { sha256Hex } from '../../activities/inference/cache-key.js';
import { launchRun } from '../../cli/launch.js';
import type { DbHandle } from '../../db/client.js';
import { runArtifacts } from '../../db/artifacts.js';
import type { SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { REPO, uniqueName } from '../helpers/env.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { specFromObject } from '../helpers/spec.js';
import { largestHistoryPayload } from './helpers.js';

const TQ = uniqueName('synth');
const ITEMS = 1200;
let db: DbHandle;
let sim: SimHandle;
let client: Client;
let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack(TQ, {
    seed: 3,
    models: {
      writer: { behaviour: 'negatives', identical_rate: 0.06, empty_rate: 0.04, refusal_rate: 0.05 },
      judge: { behaviour: 'judge', accuracy: 0.8 },
    },
  });
  ({ db, sim, client } = stack);
});
afterAll(() => stack?.close());

const q = async <T extends Record<string, unknown>>(text: string, params: unknown[] = []) => (await db.pool.query<T>(text, params)).rows;

describe('synthesize on easy-vqa, then evaluate on its items', () => {
  const name = uniqueName('judge-data');
  const errorTypes = ['hallucination', 'incompleteness', 'faulty_reasoning'];
  const spec = () => ({
    name,
    seed: 17,
    endpoints: { writer: { base_url: sim.url, model: 'writer', concurrency: 64 }, judge: { base_url: sim.url, model: 'judge', concurrency: 64 } },
    datasets: { easy: { format: 'easy-vqa', split: 'test', limit: ITEMS } },
    stages: [
      { id: 'synth', uses: 'synthesize', with: { items: 'easy', writer: 'writer', error_types: errorTypes, k: 3, min_negatives: 2, chunk_size: 900 } },
      { id: 'eval', uses: 'evaluate', needs: ['synth'], with: { dataset: { from: 'synth' }, judge: 'judge', positions: 'random', bootstrap: 0 } },
    ],
  });
  let runId: string;
  let synthRequestsSent: number;
  let imagesSent: { images: number; bytes: number };

  beforeAll(async () => {
    const loaded = await specFromObject(spec());
    const before = sim.stats();
    ({ runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ }));
    await client.workflow.getHandle(runId).result();
    const after = sim.stats();
    synthRequestsSent = after.requests - before.requests;
    imagesSent = { images: after.images - before.images, bytes: after.imageBytes - before.imageBytes };
  }, 600_000);

  it('counts reconcile: requests = items × error types × samples; kept + filtered = written; items = source − dropped', async () => {
    const [req] = await q<{ n: number }>('select count(*)::int as n from inference_requests where run_id = $1 and stage_id = $2', [runId, 'synth']);
    expect(req!.n).toBe(ITEMS * errorTypes.length);
    // Each request ran once: the stage's progress counts every request exactly once.
    const [stage] = await q<{ items_done: number; items_total: number }>('select items_done, items_total from stages where run_id = $1 and stage_id = $2', [
      runId,
      'synth',
    ]);
    expect(stage).toEqual({ items_done: ITEMS * errorTypes.length, items_total: ITEMS * errorTypes.length });
    const arts = await runArtifacts(db.db, runId);
    const source = arts.find((a) => a.kind === 'qa-items')!;
    expect(source.stageId).toBeNull();
    expect(source.rows).toBe(9673); // the whole test split is imported; limit applies in the stage
    expect(source.summary).toMatchObject({ source_rows: 9673, imported: 9673, skipped: 0 });
    const items = arts.find((a) => a.stageId === 'synth')!;
    expect(items.kind).toBe('mc-items');
    expect(items.parents).toEqual([source.id]);

    const s = items.summary as {
      source_items: number;
      items: number;
      dropped: Record<string, number>;
      error_types: Record<string, { requested: number; written: number; kept: number; request_failed: number; filtered: Record<string, number> }>;
    };
    expect(s.source_items).toBe(ITEMS);
    const byStatus = await q<{ error_type: string; status: string; n: number }>(
      'select error_type, status, count(*)::int as n from negatives where run_id = $1 and stage_id = $2 group by 1, 2',
      [runId, 'synth'],
    );
    for (const t of errorTypes) {
      const e = s.error_types[t]!;
      expect(e.requested).toBe(ITEMS);
      expect(e.written + e.request_failed).toBe(e.requested);
      expect(e.kept + Object.values(e.filtered).reduce((a, b) => a + b, 0)).toBe(e.written);
      const rows = byStatus.filter((r) => r.error_type === t);
      expect(rows.find((r) => r.status === 'kept')?.n ?? 0).toBe(e.kept);
      for (const [reason, n] of Object.entries(e.filtered)) expect(rows.find((r) => r.status === reason)!.n).toBe(n);
    }
    // The writer's identical copies, empties and refusals each reach their filter.
    const filtered = (reason: string) => errorTypes.reduce((acc, t) => acc + (s.error_types[t]!.filtered[reason] ?? 0), 0);
    for (const reason of ['near_identical', 'empty', 'refusal']) expect(filtered(reason)).toBeGreaterThan(ITEMS * 3 * 0.02);

    // Items: those with ≥ min_negatives kept; every one has K = 3 options, the reference among them.
    const kept = await q<{ item_key: string; n: number }>(
      `select item_key, count(*) filter (where status = 'kept')::int as n from negatives where run_id = $1 and stage_id = $2 group by 1`,
      [runId, 'synth'],
    );
    const eligible = kept.filter((k) => k.n >= 2).length;
    expect(items.rows).toBe(eligible);
    expect(s.items).toBe(eligible);
    expect(Object.values(s.dropped).reduce((a, b) => a + b, 0)).toBe(ITEMS - eligible);
    const mc = await q<{ candidates: string[]; best: number; query: string; source_item_key: string; answer: string; idx: number }>(
      `select m.candidates, m.best, m.query, m.source_item_key, qa.answer, m.idx from mc_items m
       join qa_items qa on qa.artifact_id = $2 and qa.item_key = m.source_item_key where m.artifact_id = $1 order by m.idx`,
      [items.id, source.id],
    );
    expect(mc.map((m) => m.idx)).toEqual(Array.from({ length: eligible }, (_, i) => i));
    for (const m of mc) {
      expect(m.candidates).toHaveLength(3);
      expect(m.candidates[m.best]).toBe(m.answer);
      expect(new Set(m.candidates).size).toBe(3);
    }
  });

  it('the best answer sits at each of the K positions equally often (chi-square, ≥ 1,000 items)', async () => {
    const [art] = (await runArtifacts(db.db, runId)).filter((a) => a.stageId === 'synth');
    const rows = await q<{ best: number; n: number }>('select best, count(*)::int as n from mc_items where artifact_id = $1 group by best', [art!.id]);
    const total = rows.reduce((a, r) => a + r.n, 0);
    expect(total).toBeGreaterThanOrEqual(1000);
    const expected = total / 3;
    const chi2 = [0, 1, 2].reduce((acc, p) => acc + ((rows.find((r) => r.best === p)?.n ?? 0) - expected) ** 2 / expected, 0);
    // 2 degrees of freedom: 13.82 is the 0.1% critical value.
    expect(chi2).toBeLessThan(13.82);
  });

  it('evaluate reads the synthesized items through from: and scores them', async () => {
    const [art] = (await runArtifacts(db.db, runId)).filter((a) => a.stageId === 'synth');
    const m = await q<{ metric: string; value: number; n: number }>(
      "select metric, value, n from metrics where run_id = $1 and stage_id = 'eval' and scope = 'overall' and policy in ('', 'excluded')",
      [runId],
    );
    expect(m.find((r) => r.metric === 'requests')!.value).toBe(art!.rows);
    // No truth file knows these items: the simulated judge guesses among 3 options.
    const acc = m.find((r) => r.metric === 'accuracy')!;
    expect(acc.n).toBe(art!.rows);
    expect(acc.value).toBeGreaterThan(0.25);
    expect(acc.value).toBeLessThan(0.42);
  });

  it("every request carried its item's image as a data URL: the simulator decoded exactly the source images' bytes", async () => {
    const arts = await runArtifacts(db.db, runId);
    const source = arts.find((a) => a.kind === 'qa-items')!;
    const items = arts.find((a) => a.stageId === 'synth')!;
    // synthesize: one request per (item, error type) with the qa item's image; evaluate: one per mc item with its image.
    const [synthBytes] = await q<{ n: number }>(
      'select coalesce(sum(b.size), 0)::int as n from qa_items qa join blobs b on b.hash = qa.image_hash where qa.artifact_id = $1 and qa.idx < $2',
      [source.id, ITEMS],
    );
    const [evalBytes] = await q<{ n: number }>(
      'select coalesce(sum(b.size), 0)::int as n from mc_items m join blobs b on b.hash = m.image_hash where m.artifact_id = $1',
      [items.id],
    );
    expect(synthRequestsSent).toBe(ITEMS * errorTypes.length + items.rows);
    expect(imagesSent.images).toBe(synthRequestsSent);
    // Only data URLs count decoded bytes at the simulator (an http URL or a path would add 0).
    expect(synthBytes!.n).toBeGreaterThan(0);
    expect(imagesSent.bytes).toBe(synthBytes!.n * errorTypes.length + evalBytes!.n);
  });

  it('no image bytes in Temporal: the largest payload of the run, its stages and their activities stays under 16 KB', async () => {
    const largest = await largestHistoryPayload(client, [runId, `${runId}/synth`, `${runId}/eval`]);
    expect(largest).toBeGreaterThan(0);
    expect(largest).toBeLessThan(16 * 1024);
  });

  it('exports mc-jsonl that evaluate loads back identically, images included', async () => {
    const [art] = (await runArtifacts(db.db, runId)).filter((a) => a.stageId === 'synth');
    const out = join(await mkdtemp(join(tmpdir(), 'jf-export-')), 'items.jsonl');
    const res = await exportArtifact(db.db, art!.id, { format: 'mc-jsonl', out });
    expect(res.rows).toBe(art!.rows);
    const back = await loadDataset({ path: out, format: 'mc-jsonl', imagesDir: dirname(out) });
    expect(back.issues).toEqual([]);
    const rows = await q<{ item_key: string; query: string; candidates: string[]; best: number; image_hash: string }>(
      'select item_key, query, candidates, best, image_hash from mc_items where artifact_id = $1 order by idx',
      [art!.id],
    );
    expect(
      back.items.map((i) => ({ item_key: i.itemKey, query: i.query, candidates: i.candidates, best: i.best, image_hash: sha256Hex(i.image!.bytes!) })),
    ).toEqual(rows);
  });

  it('lineage: the documented SQL (db/README.md) goes from an exported line to its source row, request, model, endpoint and error type', async () => {
    const readme = readFileSync(join(REPO, 'db', 'README.md'), 'utf8');
    const sql = /<!-- lineage -->\s*```sql\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(sql).toBeDefined();
    const [art] = (await runArtifacts(db.db, runId)).filter((a) => a.stageId === 'synth');
    const out = join(await mkdtemp(join(tmpdir(), 'jf-lineage-')), 'items.jsonl');
    await exportArtifact(db.db, art!.id, { format: 'mc-jsonl', out });
    const line = JSON.parse(readFileSync(out, 'utf8').split('\n')[0]!) as {
      id: string;
      candidates: string[];
      best: number;
      meta: { lineage: { artifact_id: number } };
    };
    const rows = await q<{
      option: number;
      is_reference: boolean;
      source_file: string;
      source_line: number;
      request_id: string | null;
      model: string | null;
      endpoint: string | null;
      error_type: string | null;
      status: string | null;
    }>(sql!, [line.meta.lineage.artifact_id, line.id]);
    expect(rows).toHaveLength(line.candidates.length);
    for (const r of rows) {
      expect(r.source_line).toBe(Number(line.id.split('-')[1]) + 1);
      expect(r.source_file).toMatch(/easy_vqa[/\\]data$/);
      if (r.option === line.best) {
        expect(r.is_reference).toBe(true);
        expect(r.request_id).toBeNull();
      } else {
        expect(r.is_reference).toBe(false);
        expect(r.model).toBe('writer');
        expect(r.endpoint).toBe('writer');
        expect(errorTypes).toContain(r.error_type);
        expect(r.status).toBe('kept');
      }
    }
  });

  it('a re-run with another label sends 0 requests and makes the same items', async () => {
    expect(synthRequestsSent).toBeGreaterThanOrEqual(ITEMS * errorTypes.length);
    const loaded = await specFromObject(spec());
    const before = sim.stats().requests;
    // Stage reuse off: the stages run again, every request from the cache.
    const again = await launchRun({ loaded, db: db.db, client, taskQueue: TQ, label: 'again', noReuse: loaded.plan.map((s) => s.id) });
    await client.workflow.getHandle(again.runId).result();
    expect(sim.stats().requests - before).toBe(0);
    const first = (await runArtifacts(db.db, runId)).find((a) => a.stageId === 'synth')!;
    const second = (await runArtifacts(db.db, again.runId)).find((a) => a.stageId === 'synth')!;
    expect(second.id).not.toBe(first.id);
    expect(second.contentHash).toBe(first.contentHash);
    expect(second.summary).toEqual(first.summary);
  });
});
