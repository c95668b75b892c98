/**
 * experiments/judge-data.yaml with its own simulator config, shortened with --set to 200 source
 * items: easy-vqa → synthesize → evaluate, and → distill with and without the hint. The reasoner
 * has no truth file for new items: without the hint it is right 1/K of the time, with it
 * hint_following + (1 − hint_following)/K, before the rewrites' losses. Then the loop: the
 * brief-trace sft-set trains SmolLM2-135M-Instruct (real TRL, `process` backend), the base model
 * and the checkpoint are served by `transformers serve` and judged on held-out items; the trained
 * model answers in its trained format more often, and one SQL query walks from a judgment of it
 * to its checkpoint, sft-set, mc-items and source rows (db/README.md).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { sha256Hex } from '../../activities/inference/cache-key.js';
import type { DistillSummary } from '../../activities/stages/distill.js';
import { printRunResults } from '../../cli/commands/results.js';
import type { Connected } from '../../cli/connect.js';
import { launchRun } from '../../cli/launch.js';
import { runArtifacts } from '../../db/artifacts.js';
import type { DbHandle } from '../../db/client.js';
import { loadSimConfig } from '../../sim/config.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { loadSpec } from '../../spec/load.js';
import type { RunningWorker } from '../../worker.js';
import { runCli } from '../helpers/cli.js';
import { REPO, openTestDb, startTestWorker, testClient, uniqueName } from '../helpers/env.js';
import { waitFor } from '../train/helpers.js';
import { binomial99 } from './helpers.js';

const TQ = uniqueName('judge-data');
let db: DbHandle;
let sim: SimHandle;
let worker: RunningWorker;
let client: Client;
let closeClient: () => Promise<void>;

beforeAll(async () => {
  db = await openTestDb();
  const cfg = loadSimConfig(join(REPO, 'experiments', 'sim', 'judge-data.yaml'));
  sim = await startSimulator(cfg);
  worker = await startTestWorker(TQ);
  ({ client, close: closeClient } = await testClient());
});
afterAll(async () => {
  await worker?.shutdown();
  await closeClient?.();
  await sim?.close();
  await db?.close();
});

describe('experiments/judge-data.yaml: easy-vqa → synthesize → evaluate, → distill → train → serve → evaluate base vs trained', () => {
  let runId: string;
  let resultsText = '';
  it('runs end to end; the hint raises acceptance from 1/K; judgeflow results shows the distill statistics', async () => {
    const sets = [
      `endpoints.writer.base_url=${sim.url}`,
      `endpoints.judge.base_url=${sim.url}`,
      `endpoints.judge-first.base_url=${sim.url}`,
      `endpoints.captioner.base_url=${sim.url}`,
      `endpoints.reasoner.base_url=${sim.url}`,
      `endpoints.reasoner-brief.base_url=${sim.url}`,
      `endpoints.rewriter.base_url=${sim.url}`,
      'datasets.easy.limit=200',
      // SmolLM2 elsewhere than the checkout's .cache (scripts/prepare-smollm2.py honours the same variable).
      ...(process.env.JF_SMOLLM2_DIR
        ? [`stages.train.with.base_model=${process.env.JF_SMOLLM2_DIR}`, `stages.serve-base.with.model.path=${process.env.JF_SMOLLM2_DIR}`]
        : []),
    ];
    const loaded = await loadSpec(join(REPO, 'experiments', 'judge-data.yaml'), { sets });
    ({ runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ }));
    await client.workflow.getHandle(runId).result();
    const arts = await runArtifacts(db.db, runId);
    const sft = (stage: string) => arts.find((a) => a.stageId === stage && a.kind === 'sft-set')!.summary as DistillSummary;
    const hinted = sft('distill');
    const plain = sft('distill-nohint');
    const first = (s: DistillSummary) => s.attempts['1']!;
    const [lo, hi] = binomial99(0.25, first(plain).tried);
    expect(first(plain).accepted / first(plain).tried).toBeGreaterThan(lo);
    expect(first(plain).accepted / first(plain).tried).toBeLessThan(hi);
    expect(first(hinted).accepted / first(hinted).tried).toBeGreaterThan(0.6);
    expect(hinted.requests.rewrite).toHaveProperty('remove-hint');
    expect(hinted.requests.rewrite).toHaveProperty('to-image');

    const lines: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void lines.push(a.join(' ')));
    try {
      await printRunResults({ db } as unknown as Connected, runId);
    } finally {
      spy.mockRestore();
    }
    const text = lines.join('\n');
    process.stdout.write(`${text}\n`);
    expect(text).toContain(`distill stage distill (hint on): ${hinted.source_items} items → ${hinted.accepted_items} accepted`);
    expect(text).toContain(`distill stage distill-nohint (hint off): ${plain.source_items} items → ${plain.accepted_items} accepted`);
    resultsText = text;
  }, 3_600_000);

  it('judgeflow export writes the sets in trainer formats and prints the export hash; a format of the other kind exits 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jf-cli-export-'));
    const out = join(dir, 'sft', 'judge_sft.json');
    const res = await runCli(['export', runId, 'distill', '--artifact', 'sft', '--format', 'llamafactory', '--out', out, '--json']);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const printed = JSON.parse(res.stdout) as { rows: number; sha256: string; out: string };
    const sft = (await runArtifacts(db.db, runId)).find((a) => a.stageId === 'distill' && a.kind === 'sft-set')!;
    expect(printed.rows).toBe(sft.rows);
    expect(printed.sha256).toBe(sha256Hex(readFileSync(`${out}.sha256`)));
    expect((JSON.parse(readFileSync(out, 'utf8')) as unknown[]).length).toBe(sft.rows);
    const summary = sft.summary as DistillSummary;
    const train = await runCli([
      'export',
      runId,
      'distill',
      '--artifact',
      'sft',
      '--format',
      'trl',
      '--split',
      'train',
      '--out',
      join(dir, 'train', 'sft.jsonl'),
      '--json',
    ]);
    expect(train.code).toBe(0);
    expect((JSON.parse(train.stdout) as { rows: number }).rows).toBe(summary.sft.train);
    const badSplit = await runCli(['export', runId, 'distill', '--artifact', 'sft', '--format', 'trl', '--split', 'test', '--out', join(dir, 'y.jsonl')]);
    expect(badSplit.code).toBe(2);
    expect(badSplit.stderr).toContain('--split must be train or validation');
    const wrong = await runCli(['export', runId, 'distill', '--artifact', 'sft', '--format', 'verl', '--out', join(dir, 'x.parquet')]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/format verl writes rl-set; artifact \d+ is sft-set \(use --format llamafactory \| trl \| openai\)/);
    const rl = await runCli(['export', runId, 'distill', '--artifact', 'rl', '--format', 'verl', '--out', join(dir, 'rl', 'train.parquet')]);
    expect(rl.code).toBe(0);
    expect(rl.stdout).toMatch(
      /wrote \d+ rl-set row\(s\) and \d+ image\(s\) of artifact \d+ to .*train\.parquet \(sha256 [0-9a-f]{64}; file hashes in .*train\.parquet\.sha256\)/,
    );
  });
  it('the trained model answers in its trained format more often than the base on held-out items; results print both with CIs', async () => {
    type M = { stage_id: string; metric: string; value: number; ci_low: number | null; ci_high: number | null; n: number };
    const rows = (
      await db.pool.query<M>(
        "select stage_id, metric, value, ci_low, ci_high, n from metrics where run_id = $1 and stage_id in ('eval-base', 'eval-trained') and scope = 'overall' and policy in ('', 'wrong')",
        [runId],
      )
    ).rows;
    const get = (stage: string, metric: string) => rows.find((r) => r.stage_id === stage && r.metric === metric)!;
    const items = (await db.pool.query<{ n: number }>("select count(*)::int as n from judgments where run_id = $1 and stage_id = 'eval-base'", [runId]))
      .rows[0]!.n;
    expect(items).toBeGreaterThanOrEqual(25);
    for (const stage of ['eval-base', 'eval-trained']) {
      for (const metric of ['format_rate', 'parseable_rate', 'accuracy']) {
        const m = get(stage, metric);
        expect(m.n).toBe(items);
        expect(m.ci_low).not.toBeNull();
        expect(m.ci_low!).toBeLessThanOrEqual(m.value);
        expect(m.ci_high!).toBeGreaterThanOrEqual(m.value);
      }
    }
    // The student learned the answer format of its sft-set: the share of outputs parseable in that
    // format is higher, and its interval lies above the base's.
    expect(get('eval-trained', 'format_rate').value).toBeGreaterThan(get('eval-base', 'format_rate').value);
    expect(get('eval-trained', 'format_rate').ci_low!).toBeGreaterThan(get('eval-base', 'format_rate').ci_high!);
    // The lenient parser reads a choice from almost every output of both (the base writes "The best
    // response is D."); the trained format is what differs.
    expect(get('eval-trained', 'parseable_rate').value).toBeGreaterThanOrEqual(0.9);
    const line = (stage: string) => resultsText.split('\n').find((l) => l.trimStart().startsWith(`${stage} `))!;
    expect(resultsText).toContain('answer format');
    const pctCi = (m: M) => `${(m.value * 100).toFixed(1)} [${(m.ci_low! * 100).toFixed(1)}, ${(m.ci_high! * 100).toFixed(1)}]`;
    for (const stage of ['eval-base', 'eval-trained']) {
      expect(line(stage)).toContain(pctCi(get(stage, 'format_rate')));
      expect(line(stage)).toContain(pctCi(get(stage, 'parseable_rate')));
    }

    // Held out: no image of an evaluated item is in the set the model trained on.
    const shared = (
      await db.pool.query<{ n: number }>(
        `select count(*)::int as n from mc_items h
         join artifacts ha on ha.id = h.artifact_id and ha.run_id = $1 and ha.stage_id = 'synth-heldout'
         join sft_rows t on t.image_hash = h.image_hash
         join artifacts ta on ta.id = t.artifact_id and ta.run_id = $1 and ta.stage_id = 'distill-brief'`,
        [runId],
      )
    ).rows[0]!.n;
    expect(shared).toBe(0);

    // Both servers are stopped once their evaluation ended (by their own workflow, which may record
    // it a moment after the run's end).
    const servers = await waitFor('both servers to be recorded stopped', 120_000, async () => {
      const rows = (
        await db.pool.query<{ stage_id: string; state: string; identity: string }>(
          'select stage_id, state, identity from servers where run_id = $1 order by stage_id',
          [runId],
        )
      ).rows;
      return rows.length === 2 && rows.every((r) => r.state === 'stopped' || r.state === 'failed') && rows;
    });
    expect(servers.map((r) => [r.stage_id, r.state])).toEqual([
      ['serve-base', 'stopped'],
      ['serve-trained', 'stopped'],
    ]);
    expect(servers[0]!.identity).toMatch(/^folder:/);
    expect(servers[1]!.identity).toMatch(/^checkpoint:/);
  }, 600_000);

  it('one SQL query (db/README.md) walks from a judgment of the trained model to its checkpoint, sft-set, mc-items and source rows', async () => {
    const readme = readFileSync(join(REPO, 'db', 'README.md'), 'utf8');
    const sql = /<!-- judgment-lineage -->\s*```sql\n([\s\S]*?)```/.exec(readme)![1]!;
    const judged = (
      await db.pool.query<{ item_key: string; view: number; sample: number }>(
        "select item_key, view, sample from judgments where run_id = $1 and stage_id = 'eval-trained' order by item_key limit 1",
        [runId],
      )
    ).rows[0]!;
    const res = await db.pool.query<{
      served_model: string;
      endpoint_artifact: number;
      checkpoint: number;
      checkpoint_uri: string;
      checkpoint_digest: string;
      sft_set: number;
      trained_item: string;
      mc_items: number;
      source_file: string;
      source_line: number;
      source_question: string;
    }>(sql, [runId, 'eval-trained', judged.item_key, judged.view, judged.sample]);
    const arts = await runArtifacts(db.db, runId);
    const ckpt = arts.find((a) => a.stageId === 'train' && a.kind === 'checkpoint')!;
    const sft = arts.find((a) => a.stageId === 'distill-brief' && a.kind === 'sft-set')!;
    const synth = arts.find((a) => a.stageId === 'synth' && a.kind === 'mc-items')!;
    const endpoint = arts.find((a) => a.stageId === 'serve-trained' && a.kind === 'endpoint')!;
    const trainRows = (await db.pool.query<{ n: number }>("select count(*)::int as n from sft_rows where artifact_id = $1 and split = 'train'", [sft.id]))
      .rows[0]!.n;
    expect(res.rows).toHaveLength(trainRows);
    for (const r of res.rows) {
      expect(r.endpoint_artifact).toBe(endpoint.id);
      expect(r.checkpoint).toBe(ckpt.id);
      expect(r.checkpoint_uri).toBe(ckpt.source);
      expect(r.served_model).toBe(ckpt.source!.replace(/^file:\/\//, ''));
      expect(r.sft_set).toBe(sft.id);
      expect(r.mc_items).toBe(synth.id);
      expect(r.source_file).toMatch(/easy_vqa/);
      expect(r.source_line).toBeGreaterThan(0);
      expect(r.source_question.length).toBeGreaterThan(0);
    }
    // Each trained item is a distinct synthesized item with its own source row.
    expect(new Set(res.rows.map((r) => r.trained_item)).size).toBe(trainRows);
  });
});
