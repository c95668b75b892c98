/**
 * experiments/judge-data.yaml with its own simulator config, shortened with --set to 200 source
 * items: easy-vqa → synthesize → evaluate, and → distill with and without the hint. The reasoner
 * has no truth file for new items: without the hint it is right 1/K of the time, with it
 * hint_following + (1 − hint_following)/K, before the rewrites' losses.
 */
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
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
  it('runs end to end; the hint raises acceptance from 1/K; judgeflow results shows the distill statistics', async () => {
    const sets = [`endpoints.writer.base_url=${sim.url}`, `endpoints.judge.base_url=${sim.url}`, `endpoints.judge-first.base_url=${sim.url}`, `endpoints.captioner.base_url=${sim.url}`, `endpoints.reasoner.base_url=${sim.url}`, `endpoints.rewriter.base_url=${sim.url}`, 'datasets.easy.limit=200'];
    const loaded = await loadSpec(join(REPO, 'experiments', 'judge-data.yaml'), { sets });
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
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
});
