/**
 * Ablation groups of the sweep and distill kinds for the compare, report and dashboard tests:
 * a best-of-N sweep judged by an unbiased and a position-biased judge, and distill with the hint
 * off and on over the same synthesized items. Real Temporal, Postgres, the simulator over HTTP.
 */
import type { Client } from '@temporalio/client';
import { planGroup } from '../../cli/ablation-group.js';
import { launchRun } from '../../cli/launch.js';
import type { DbHandle } from '../../db/client.js';
import type { SimHandle } from '../../sim/server.js';
import { startSimulator } from '../../sim/server.js';
import { synthStage, synthTruth } from '../distill/helpers.js';
import { uniqueName } from './env.js';
import { specFromObject } from './spec.js';

export interface KindSims {
  writer: SimHandle;
  sim: SimHandle;
  close(): Promise<void>;
}

/** The simulators: a negatives writer, and policy, judges, captioner and a reasoner that knows the synthesized items. */
export async function startKindSims(opts: { db: DbHandle; client: Client; taskQueue: string; seed: number; distillItems: number }): Promise<KindSims> {
  const writer = await startSimulator({ seed: 3, models: { writer: { behaviour: 'negatives' } } });
  const truth = await synthTruth({
    db: opts.db,
    client: opts.client,
    taskQueue: opts.taskQueue,
    writerUrl: writer.url,
    name: uniqueName('kinds-truth'),
    seed: opts.seed,
    limit: opts.distillItems,
  });
  const sim = await startSimulator({
    seed: 11,
    models: {
      policy: { behaviour: 'policy', accuracy: 0.5, answers: 'easy-vqa:test' },
      judge: { behaviour: 'judge', accuracy: 0.8, first_bias: 0, think: false },
      'judge-biased': { behaviour: 'judge', accuracy: 0.8, first_bias: 0.7, think: false },
      captioner: { behaviour: 'captioner', output_tokens: 30 },
      reasoner: { behaviour: 'reasoner', accuracy: 0.5, hint_following: 0.6, leak_rate: 0.4, truth, output_tokens: 60 },
    },
  });
  return {
    writer,
    sim,
    close: async () => {
      await sim.close();
      await writer.close();
    },
  };
}

/** A sweep spec: best-of-N over easy-vqa test questions. */
export function sweepSpec(sim: SimHandle, opts: { name: string; seed: number; questions: number; judge?: string; grader?: string }) {
  return {
    name: opts.name,
    seed: opts.seed,
    endpoints: {
      policy: { base_url: sim.url, model: 'policy', concurrency: 32, price: { input_per_mtok: 0.1, output_per_mtok: 0.4 } },
      judge: { base_url: sim.url, model: 'judge', concurrency: 32, price: { input_per_mtok: 0.15, output_per_mtok: 0.6 } },
      'judge-biased': { base_url: sim.url, model: 'judge-biased', concurrency: 32, price: { input_per_mtok: 0.15, output_per_mtok: 0.6 } },
    },
    datasets: { easy: { format: 'easy-vqa', split: 'test', limit: opts.questions } },
    stages: [
      {
        id: 'bon',
        uses: 'sweep',
        with: {
          items: 'easy',
          policy: 'policy',
          judge: opts.judge ?? 'judge',
          grader: opts.grader ?? 'normalized',
          n: [1, 2, 4],
          resamples: 2,
          strategies: ['random', 'mc', 'oracle'],
          bootstrap: 200,
        },
      },
    ] as Record<string, unknown>[],
  };
}

/** synthesize → distill (the reasoner with or without the hint, two attempts). */
export function distillSpec(kinds: KindSims, opts: { name: string; seed: number; items: number }) {
  const s = synthStage(opts.items);
  const ep = (url: string, model: string) => ({ base_url: url, model, concurrency: 32 });
  return {
    name: opts.name,
    seed: opts.seed,
    endpoints: { writer: ep(kinds.writer.url, 'writer'), captioner: ep(kinds.sim.url, 'captioner'), reasoner: ep(kinds.sim.url, 'reasoner') },
    datasets: s.datasets,
    stages: [
      s.stage,
      {
        id: 'distill',
        uses: 'distill',
        needs: ['synth'],
        with: { items: { from: 'synth' }, captioner: 'captioner', reasoner: 'reasoner', hint: false, max_attempts: 2 },
      },
    ] as Record<string, unknown>[],
  };
}

/** Launches a spec with `ablations:` as a group and waits for its runs; returns the group id and run ids by the axis value. */
export async function runGroup(opts: {
  spec: Record<string, unknown>;
  axis: { name: string; path: string; values: unknown[] };
  db: DbHandle;
  client: Client;
  taskQueue: string;
}): Promise<{ groupId: string; runs: string[] }> {
  const loaded = await specFromObject({ ...opts.spec, ablations: { axes: { [opts.axis.name]: { path: opts.axis.path, values: opts.axis.values } } } });
  const group = await planGroup(loaded, { sets: [] });
  const runs: string[] = [];
  for (const m of group.members) {
    const { runId } = await launchRun({
      loaded: m.loaded,
      db: opts.db.db,
      client: opts.client,
      taskQueue: opts.taskQueue,
      runId: m.runId,
      groupId: group.groupId,
      axes: m.axes,
    });
    runs.push(runId);
  }
  for (const id of runs) await opts.client.workflow.getHandle(id).result();
  return { groupId: group.groupId, runs };
}

/** Launches one run and waits for it. */
export async function runOne(spec: unknown, opts: { db: DbHandle; client: Client; taskQueue: string }): Promise<string> {
  const { runId } = await launchRun({ loaded: await specFromObject(spec), db: opts.db.db, client: opts.client, taskQueue: opts.taskQueue });
  await opts.client.workflow.getHandle(runId).result();
  return runId;
}
