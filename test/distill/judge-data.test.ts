/**
 * experiments/judge-data.yaml with its own simulator config, shortened with --set to 200 source
 * items: easy-vqa → synthesize → evaluate, and → distill with and without the hint. The reasoner
 * has no truth file for new items: without the hint it is right 1/K of the time, with it
 * hint_following + (1 − hint_following)/K, before the rewrites' losses.
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

describe('experiments/judge-data.yaml: easy-vqa → synthesize → evaluate, → distill', () => {
  let runId: string;
  it('runs end to end; the hint raises acceptance from 1/K; judgeflow results shows the distill statistics', async () => {
    const sets = [
      `endpoints.writer.base_url=${sim.url}`,
      `endpoints.judge.base_url=${sim.url}`,
      `endpoints.judge-first.base_url=${sim.url}`,
      `endpoints.captioner.base_url=${sim.url}`,
      `endpoints.reasoner.base_url=${sim.url}`,
      `endpoints.rewriter.base_url=${sim.url}`,
      'datasets.easy.limit=200',
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
  });

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
});
