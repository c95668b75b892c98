import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { exportArtifact } from '../../activities/datasets/export.js';
import { launchRun } from '../../cli/launch.js';
import { runArtifacts } from '../../db/artifacts.js';
import type { DbHandle } from '../../db/client.js';
import { specFromObject } from '../helpers/spec.js';

/** Two-sided binomial interval at 99% (normal approximation): the measured rate must fall inside. */
export function binomial99(p: number, n: number): [number, number] {
  const h = 2.576 * Math.sqrt((p * (1 - p)) / n);
  return [p - h, p + h];
}

/** The synthesize stage used as distill's source: easy-vqa test items into 3-option mc-items. */
export function synthStage(limit: number) {
  return {
    datasets: { easy: { format: 'easy-vqa', split: 'test', limit } },
    stage: {
      id: 'synth',
      uses: 'synthesize',
      with: { items: 'easy', writer: 'writer', error_types: ['hallucination', 'incompleteness', 'faulty_reasoning'], k: 3, min_negatives: 2 },
    },
  };
}

/**
 * Runs synthesize alone and exports its items as mc-jsonl: the simulated reasoner's truth file (it
 * learns the right option from it, as the judge learns VL-RewardBench's). A later run with the
 * same synthesize stage makes the same items from the cache.
 */
export async function synthTruth(opts: {
  db: DbHandle;
  client: Client;
  taskQueue: string;
  writerUrl: string;
  name: string;
  seed: number;
  limit: number;
}): Promise<string> {
  const s = synthStage(opts.limit);
  const loaded = await specFromObject({
    name: opts.name,
    seed: opts.seed,
    endpoints: { writer: { base_url: opts.writerUrl, model: 'writer', concurrency: 32 } },
    datasets: s.datasets,
    stages: [s.stage],
  });
  const { runId } = await launchRun({ loaded, db: opts.db.db, client: opts.client, taskQueue: opts.taskQueue });
  await opts.client.workflow.getHandle(runId).result();
  const art = (await runArtifacts(opts.db.db, runId)).find((a) => a.stageId === 'synth')!;
  const out = join(await mkdtemp(join(tmpdir(), 'jf-distill-truth-')), 'items.jsonl');
  await exportArtifact(opts.db.db, art.id, { format: 'mc-jsonl', out });
  return out;
}
