/**
 * The artifact commands through the real `judgeflow` bin on a finished easy-vqa → synthesize →
 * evaluate run: `artifacts` (kind, rows, hash, parents; --json), `export` of the mc-items
 * (mc-jsonl; --json; wrong names and formats exit 2), `results`/`status` rendering each kind
 * (synthesize's negatives per error type, evaluate's table, a kind without a renderer by its
 * output), and a qa source without a valid row refused at launch.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../activities/datasets/mc.js';
import type { SynthesisSummary } from '../../activities/stages/synthesize.js';
import { launchRun } from '../../cli/launch.js';
import { runArtifacts, type ArtifactListing } from '../../db/artifacts.js';
import type { DbHandle } from '../../db/client.js';
import type { SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { runCli } from '../helpers/cli.js';
import { REPO, uniqueName } from '../helpers/env.js';
import { specFromObject, writeSpec } from '../helpers/spec.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

const TQ = uniqueName('synth-cli');
const ITEMS = 60;
const ERROR_TYPES = ['hallucination', 'wrong_knowledge'];
const SAMPLES = 2;
const REQUESTS = ITEMS * ERROR_TYPES.length * SAMPLES;
/** wrong_knowledge's template comes from the spec; hallucination keeps the built-in one. */
const CUSTOM = 'Custom flaw for judge training. Question: {question} Reference: {reference} Type: {error_type}';
let db: DbHandle;
let sim: SimHandle;
let client: Client;
let stack: TestStack;
let runId: string;
let source: ArtifactListing;
let items: ArtifactListing;

beforeAll(async () => {
  stack = await startTestStack(TQ, {
    seed: 9,
    models: {
      writer: { behaviour: 'negatives', identical_rate: 0.1, empty_rate: 0.1, refusal_rate: 0.1 },
      judge: { behaviour: 'judge', accuracy: 0.8 },
    },
  });
  ({ db, sim, client } = stack);
  const loaded = await specFromObject({
    name: uniqueName('synth-cli'),
    seed: 5,
    endpoints: { writer: { base_url: sim.url, model: 'writer', concurrency: 16 }, judge: { base_url: sim.url, model: 'judge', concurrency: 16 } },
    datasets: { easy: { format: 'easy-vqa', split: 'test', limit: ITEMS } },
    stages: [
      {
        id: 'synth',
        uses: 'synthesize',
        with: { items: 'easy', writer: 'writer', error_types: ERROR_TYPES, samples: SAMPLES, templates: { wrong_knowledge: CUSTOM }, k: 3, min_negatives: 1 },
      },
      { id: 'eval', uses: 'evaluate', needs: ['synth'], with: { dataset: { from: 'synth' }, judge: 'judge', positions: 'random', bootstrap: 0 } },
      // A kind with no results renderer of its own (test only).
      { id: 'work', uses: 'test-work', with: { items: 3, ms: 1, batch: 3 } },
    ],
  });
  ({ runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ }));
  await client.workflow.getHandle(runId).result();
  const arts = await runArtifacts(db.db, runId);
  source = arts.find((a) => a.kind === 'qa-items')!;
  items = arts.find((a) => a.stageId === 'synth')!;
}, 600_000);
afterAll(() => stack?.close());

const cells = (line: string) => line.trim().split(/\s{2,}/);

describe('judgeflow artifacts / export / results on a synthesize run', () => {
  it('requests = items × error types × samples, each with its template; an item has min(K, kept + 1) options', async () => {
    const q = async <T extends Record<string, unknown>>(text: string, params: unknown[]) => (await db.pool.query<T>(text, params)).rows;
    const [req] = await q<{ n: number }>("select count(*)::int as n from inference_requests where run_id = $1 and stage_id = 'synth'", [runId]);
    expect(req!.n).toBe(REQUESTS);
    const bySample = await q<{ sample: number; error_type: string; n: number }>(
      "select sample, error_type, count(*)::int as n from negatives where run_id = $1 and stage_id = 'synth' group by 1, 2 order by 1, 2",
      [runId],
    );
    expect(bySample).toEqual([0, 1].flatMap((sample) => ERROR_TYPES.map((t) => ({ sample, error_type: t, n: ITEMS }))));

    // The prompt of each (item, error type): the spec's template for wrong_knowledge, the built-in one for hallucination.
    const bodies = await q<{ item_key: string; body: string; question: string; answer: string }>(
      `select r.item_key, b.body::text as body, qa.question, qa.answer from inference_requests r
       join request_bodies b on b.hash = r.body_hash
       join qa_items qa on qa.artifact_id = $2 and qa.item_key = split_part(r.item_key, '|', 1)
       where r.run_id = $1 and r.stage_id = 'synth'`,
      [runId, source.id],
    );
    expect(bodies).toHaveLength(REQUESTS);
    for (const b of bodies) {
      const text = JSON.stringify(
        b.item_key.includes('|wrong_knowledge|')
          ? `Custom flaw for judge training. Question: ${b.question} Reference: ${b.answer} Type: wrong_knowledge`
          : `Reference answer: <reference>${b.answer}</reference>`,
      ).slice(1, -1);
      expect(b.body).toContain(text);
      expect(b.body.includes('You write flawed answers')).toBe(b.item_key.includes('|hallucination|'));
    }

    // K = 3 where two negatives survived, fewer options where only one did (min_negatives 1).
    const shapes = await q<{ options: number; kept: number }>(
      `select jsonb_array_length(m.candidates)::int as options,
         (select count(*)::int from negatives n where n.run_id = $2 and n.stage_id = 'synth' and n.item_key = m.item_key and n.status = 'kept') as kept
       from mc_items m where m.artifact_id = $1`,
      [items.id, runId],
    );
    expect(shapes).toHaveLength(items.rows);
    for (const sh of shapes) expect(sh.options).toBe(Math.min(3, sh.kept + 1));
    expect(shapes.some((sh) => sh.options === 3)).toBe(true);
  });

  it('artifacts lists the import and the stage output with kind, rows, hash and parents; --json gives the same listing', async () => {
    const res = await runCli(['artifacts', runId]);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const lines = res.stdout.trimEnd().split('\n');
    expect(cells(lines[0]!)).toEqual(['id', 'kind', 'name', 'producer', 'rows', 'hash', 'parents']);
    const rowOf = (id: number) => cells(lines.find((l) => l.startsWith(`${id} `))!);
    expect(rowOf(source.id)).toEqual([String(source.id), 'qa-items', 'easy', 'import easy-vqa', String(source.rows), source.contentHash.slice(0, 12)]);
    expect(rowOf(items.id)).toEqual([
      String(items.id),
      'mc-items',
      'items',
      'stage synth',
      String(items.rows),
      items.contentHash.slice(0, 12),
      String(source.id),
    ]);
    expect(lines).toHaveLength(2 + 2);

    const json = await runCli(['artifacts', runId, '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual(JSON.parse(JSON.stringify(await runArtifacts(db.db, runId))));

    const missing = await runCli(['artifacts', 'no-such-run']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no run "no-such-run"');
  });

  it('export writes the mc-items as mc-jsonl that evaluate reads back; bad artifact, stage and format exit 2', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jf-cli-mc-'));
    const out = join(dir, 'items.jsonl');
    const res = await runCli(['export', runId, 'synth', '--artifact', 'items', '--format', 'mc-jsonl', '--out', out, '--json']);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const printed = JSON.parse(res.stdout) as { artifact: number; rows: number; images: number; out: string };
    expect(printed).toMatchObject({ artifact: items.id, rows: items.rows, out });
    const imageCount = (await db.pool.query<{ n: number }>('select count(distinct image_hash)::int as n from mc_items where artifact_id = $1', [items.id]))
      .rows[0]!.n;
    expect(printed.images).toBe(imageCount);
    expect(readFileSync(out, 'utf8').trimEnd().split('\n')).toHaveLength(items.rows);
    const back = await loadDataset({ path: out, format: 'mc-jsonl', imagesDir: dirname(out) });
    expect(back.issues).toEqual([]);
    const best = await db.pool.query<{ item_key: string; best: number }>('select item_key, best from mc_items where artifact_id = $1 order by idx', [items.id]);
    expect(back.items.map((i) => [i.itemKey, i.best])).toEqual(best.rows.map((r) => [r.item_key, r.best]));

    // Text output names rows, images, artifact and file.
    const text = await runCli(['export', runId, 'synth', '--format', 'mc-jsonl', '--out', join(dir, 'again.jsonl')]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`wrote ${items.rows} mc-items row(s) and ${imageCount} image(s) of artifact ${items.id} to ${join(dir, 'again.jsonl')}`);
    // The same lines; only the images' folder is named after the file.
    expect(readFileSync(join(dir, 'again.jsonl'), 'utf8')).toBe(readFileSync(out, 'utf8').replaceAll('"items.jsonl.images/', '"again.jsonl.images/'));

    const bad: [string[], RegExp][] = [
      [
        ['export', runId, 'synth', '--artifact', 'sft', '--format', 'mc-jsonl', '--out', join(dir, 'x.jsonl')],
        /no artifact "sft" in stage "synth": items \(mc-items\)/,
      ],
      [
        ['export', runId, 'eval', '--format', 'mc-jsonl', '--out', join(dir, 'x.jsonl')],
        /stage "eval" of run .* produced no artifact; stages with artifacts: synth/,
      ],
      [['export', runId, 'synth', '--format', 'verl', '--out', join(dir, 'x.parquet')], /format verl writes rl-set; artifact \d+ is mc-items/],
      [['export', runId, 'synth', '--format', 'nope', '--out', join(dir, 'x.jsonl')], /--format must be one of .*mc-jsonl/],
    ];
    for (const [args, pattern] of bad) {
      const r = await runCli(args);
      expect(r.stderr).toMatch(pattern);
      expect(r.code).toBe(2);
    }
  });

  it('results prints each kind its own way: negatives per error type, the evaluate table, a kind without a renderer by its output; status ends with them', async () => {
    const res = await runCli(['results', runId]);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const lines = res.stdout.split('\n');
    const s = items.summary as SynthesisSummary;
    expect(s.source_items).toBe(ITEMS);
    expect(res.stdout).toContain(`negatives of stage synth (artifact ${items.id} "items": ${items.rows} mc-items of ${ITEMS} source items, K ≤ 3)`);
    const header = cells(lines.find((l) => l.startsWith('error type'))!);
    const reasons = header.filter((h) => h.startsWith('filtered:')).map((h) => h.slice('filtered:'.length));
    // The writer's copies, empties and refusals all reach a filter.
    expect(reasons).toEqual(expect.arrayContaining(['empty', 'near_identical', 'refusal']));
    const total = { requested: 0, written: 0, failed: 0, kept: 0 };
    for (const t of ERROR_TYPES) {
      const e = s.error_types[t]!;
      expect(e.requested).toBe(ITEMS * SAMPLES);
      const row = cells(lines.find((l) => l.startsWith(`${t} `))!);
      expect(row).toEqual([t, e.requested, e.written, e.request_failed, ...reasons.map((r) => e.filtered[r] ?? 0), e.kept].map(String));
      total.requested += e.requested;
      total.written += e.written;
      total.failed += e.request_failed;
      total.kept += e.kept;
    }
    const totalRow = cells(lines.find((l) => l.startsWith('total '))!);
    expect(totalRow[1]).toBe(String(total.requested));
    expect(totalRow[2]).toBe(String(total.written));
    expect(totalRow.at(-1)).toBe(String(total.kept));
    const dropped = Object.values(s.dropped).reduce((a, b) => a + b, 0);
    expect(dropped).toBe(ITEMS - items.rows);
    if (dropped > 0) expect(res.stdout).toContain(`dropped items: ${dropped} (fewer than 1 kept negative(s))`);

    // evaluate's table: its header and its row, with the requests it made.
    expect(lines.some((l) => /^stage\s+items\s+overall/.test(l))).toBe(true);
    const evalRow = lines.find((l) => /^eval\s/.test(l))!;
    expect(cells(evalRow)[1]).toBe(`${items.rows}/${items.rows}`);
    expect(res.stdout).toContain('stage work (test-work): {"items":3}');

    // status: the stage table names each stage's kind and counts its own units (synthesize: requests).
    const status = await runCli(['status', runId]);
    expect(status.code).toBe(0);
    expect(cells(status.stdout.split('\n').find((l) => l.startsWith('synth '))!).slice(0, 4)).toEqual([
      'synth',
      'synthesize',
      'succeeded',
      `[########################] ${REQUESTS}/${REQUESTS}`,
    ]);
    expect(cells(status.stdout.split('\n').find((l) => l.startsWith('eval '))!).slice(0, 4)).toEqual([
      'eval',
      'evaluate',
      'succeeded',
      `[########################] ${items.rows}/${items.rows}`,
    ]);
    // Following a finished run ends with the same per-kind results.
    const watched = await runCli(['status', runId, '--watch']);
    expect(watched.code).toBe(0);
    expect(watched.stdout).toContain(`negatives of stage synth (artifact ${items.id}`);
    expect(watched.stdout).toContain('stage work (test-work): {"items":3}');
  });
});

describe('a qa source without a valid row', () => {
  it('is refused at launch: exit 2 naming the spec, the dataset and the file', async () => {
    const qa = writeSpec(`${JSON.stringify({ id: 'a', image: 'missing.png', question: 'What?', answer: 'That.' })}\n{"id": "b"\n`, 'qa.jsonl');
    const path = writeSpec({
      name: uniqueName('no-valid-qa'),
      endpoints: { w: { base_url: sim.url, model: 'writer' } },
      datasets: { qa: { path: qa, format: 'qa-jsonl' } },
      stages: [{ id: 'synth', uses: 'synthesize', with: { items: 'qa', writer: 'w' } }],
    });
    const res = await runCli(['run', path]);
    expect(res.stderr).toContain(relative(REPO, path));
    expect(res.stderr).toMatch(/datasets\.qa: .*no valid qa-jsonl rows in .*qa\.jsonl \(2 bad rows; line 1: unreadable image/);
    expect(res.code).toBe(2);
  });
});
