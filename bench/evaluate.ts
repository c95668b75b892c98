/**
 * Evaluate-stage benchmark: the whole `evaluate` stage on Temporal vs a plain `openai` script.
 *
 *   npx tsx bench/evaluate.ts [--samples 3] [--latency 50] [--concurrency 64] [--rounds 3]
 *
 * Workload: the 1,250 VL-RewardBench items x 2 orders (swap) x k samples (7,500 requests at k=3)
 * against a simulated judge with a fixed latency, the simulator in a child process.
 *  (a) judgeflow: launch an experiment with one `evaluate` stage and wait for it — dataset import,
 *      7,500 request rows, the gateway (cache lookups, result writes), judgments and metrics with
 *      1,000 bootstrap resamples, all in Postgres; fresh run id each round (no cache hits);
 *  (b) plain: what a researcher's script does: render the same prompts, call the API at the same
 *      concurrency with the `openai` client, parse the answers, compute the accuracy in memory.
 * Prints both times (median over rounds, which alternate a and b) and the ratio a/b (target <= 1.25).
 */
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { launchRun } from '../cli/launch.js';
import { loadDataset } from '../activities/datasets/mc.js';
import { parseChoice } from '../activities/evaluate/parse.js';
import { renderJudgePrompt } from '../activities/evaluate/prompt.js';
import { viewsFor } from '../activities/evaluate/views.js';
import '../spec/builtin.js';
import { loadSpec } from '../spec/load.js';
import { Cleanups, startJudgeflowBench, REPO, median, watchEventLoop } from './lib.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';

const { values: args } = parseArgs({
  options: {
    samples: { type: 'string', default: '3' },
    latency: { type: 'string', default: '50' },
    concurrency: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    /** The stage's chunk_size and parallel (default: the stage's defaults). */
    'chunk-size': { type: 'string' },
    parallel: { type: 'string' },
    /** Time one side only (for profiling): judgeflow | plain. */
    only: { type: 'string' },
  },
});
const K = Number(args.samples);
const LATENCY = Number(args.latency);
const CONCURRENCY = Number(args.concurrency);
const ROUNDS = Number(args.rounds);
const DATA = join(REPO, 'data', 'vl-rewardbench', 'data.jsonl');

async function plainScript(url: string, seed: number): Promise<{ seconds: number; accuracy: number; requests: number; lag: string }> {
  const t0 = performance.now();
  const lagOf = watchEventLoop();
  const { items } = await loadDataset({ path: DATA });
  const client = new OpenAI({ baseURL: url, apiKey: 'EMPTY', maxRetries: 0, timeout: 120_000 });
  const jobs: { item: number; perm: number[]; sample: number; prompt: string }[] = [];
  items.forEach((item, i) => {
    for (const perm of viewsFor('swap', item.candidates.length, seed, item.itemKey)) {
      const prompt = renderJudgePrompt({ query: item.query, candidates: perm.map((c) => item.candidates[c]!), labels: 'letters' });
      for (let s = 0; s < K; s++) jobs.push({ item: i, perm, sample: s, prompt });
    }
  });
  let next = 0;
  // Votes per (item, order): the majority of the k samples is that order's choice.
  const votes = new Map<string, number[]>();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < jobs.length) {
        const job = jobs[next++]!;
        const res = await client.chat.completions.create({
          model: 'judge',
          messages: [{ role: 'user', content: job.prompt }],
          temperature: 0.6,
          max_tokens: 2048,
          seed: seed + job.sample,
        });
        const pos = parseChoice(res.choices[0]?.message.content ?? '', job.perm.length, 'letters').position;
        if (pos !== null) {
          const key = `${job.item}/${job.perm.join('')}`;
          votes.set(key, [...(votes.get(key) ?? []), job.perm[pos]!]);
        }
      }
    }),
  );
  let correct = 0;
  for (const [key, vs] of votes) {
    const counts = new Map<number, number>();
    for (const v of vs) counts.set(v, (counts.get(v) ?? 0) + 1);
    const winner = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0];
    if (winner === items[Number(key.split('/')[0])]!.best) correct++;
  }
  const parsed = votes.size;
  const lag = lagOf();
  return { seconds: (performance.now() - t0) / 1000, accuracy: correct / parsed, requests: jobs.length, lag };
}

async function main(cleanups: Cleanups): Promise<void> {
  const { handle, url, client, taskQueue } = await startJudgeflowBench(cleanups, {
    name: 'evaluate',
    simulator: { seed: 3, truth: DATA, latency: { kind: 'fixed', ms: LATENCY }, models: { judge: { behaviour: 'judge', accuracy: 0.8 } } },
  });

  const dir = mkdtempSync(join(tmpdir(), 'jf-bench-eval-'));
  // A new seed per run: otherwise the content-addressed cache answers every request of a repeat.
  let seed = 100;
  const judgeflowRun = async (round: string): Promise<{ seconds: number; accuracy: number; requests: number; timeline: string }> => {
    const path = join(dir, `${round}.yaml`);
    writeFileSync(
      path,
      YAML.stringify({
        name: `bench-eval-${round}-${Date.now()}`,
        seed: seed++,
        endpoints: { judge: { base_url: url, model: 'judge', concurrency: CONCURRENCY, timeout_s: 120 } },
        datasets: { vlrb: { path: DATA } },
        stages: [
          {
            id: 'eval',
            uses: 'evaluate',
            with: {
              dataset: 'vlrb',
              judge: 'judge',
              positions: 'swap',
              samples: K,
              ...(args['chunk-size'] ? { chunk_size: Number(args['chunk-size']) } : {}),
              ...(args.parallel ? { parallel: Number(args.parallel) } : {}),
            },
          },
        ],
      }),
    );
    const t0 = performance.now();
    const lagOf = watchEventLoop();
    const loaded = await loadSpec(path);
    const { runId } = await launchRun({ loaded, db: handle.db, client, taskQueue });
    const out = (await client.workflow.getHandle(runId).result()) as { stages: Record<string, { ref: { accuracy: number }; items: { total: number } }> };
    const seconds = (performance.now() - t0) / 1000;
    const lag = lagOf();
    // Where the time went, from the rows' own timestamps (ms after the launch).
    const t = await handle.db.$client.query<Record<string, string | null>>(
      `select extract(epoch from (s.started_at - r.created_at)) * 1000 as stage_start,
              (select extract(epoch from (min(q.created_at) - r.created_at)) * 1000 from inference_requests q where q.run_id = r.id) as first_row,
              (select extract(epoch from (min(x.finished_at) - r.created_at)) * 1000 from inference_requests q join inference_results x on x.request_id = q.id where q.run_id = r.id) as first_result,
              (select extract(epoch from (max(x.finished_at) - r.created_at)) * 1000 from inference_requests q join inference_results x on x.request_id = q.id where q.run_id = r.id) as last_result,
              (select extract(epoch from (min(m.created_at) - r.created_at)) * 1000 from metrics m where m.run_id = r.id) as metrics,
              extract(epoch from (r.finished_at - r.created_at)) * 1000 as finished
       from runs r join stages s on s.run_id = r.id where r.id = $1`,
      [runId],
    );
    const ms = (v: string | null | undefined) => (v === null || v === undefined ? '?' : Number(v).toFixed(0));
    const row = t.rows[0] ?? {};
    const timeline =
      `launch→stage ${ms(row.stage_start)} ms, first request row ${ms(row.first_row)}, first result ${ms(row.first_result)}, ` +
      `last result ${ms(row.last_result)}, metrics ${ms(row.metrics)}, run finished ${ms(row.finished)} (after the launch's run row); ${lag}`;
    return { seconds, accuracy: out.stages.eval!.ref.accuracy, requests: out.stages.eval!.items.total, timeline };
  };

  console.log(`evaluate benchmark: 1,250 items x 2 orders x ${K} samples, simulator latency ${LATENCY} ms, concurrency ${CONCURRENCY}, ${ROUNDS} rounds`);
  // Warm-up of both paths (JIT, connections, workflow bundle, the one-time dataset import).
  if (args.only !== 'judgeflow') await plainScript(url, 1000);
  if (args.only !== 'plain') await judgeflowRun('warm-up');
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = (r % 2 === 0 ? ['judgeflow', 'plain'] : ['plain', 'judgeflow']).filter((w) => !args.only || w === args.only);
    for (const which of order) {
      if (which === 'judgeflow') {
        const res = await judgeflowRun(`r${r}`);
        a.push(res.seconds);
        console.log(
          `  round ${r + 1}: judgeflow evaluate stage ${res.seconds.toFixed(2)} s (${res.requests} requests, accuracy ${(res.accuracy * 100).toFixed(1)}%)`,
        );
        console.log(`           ${res.timeline}`);
      } else {
        const res = await plainScript(url, 2000 + r);
        b.push(res.seconds);
        console.log(
          `  round ${r + 1}: plain openai script    ${res.seconds.toFixed(2)} s (${res.requests} requests, accuracy ${(res.accuracy * 100).toFixed(1)}%)`,
        );
        console.log(`           ${res.lag}`);
      }
    }
  }
  if (args.only) return;
  console.log(
    `\njudgeflow evaluate stage (Temporal + Postgres, everything stored): ${median(a).toFixed(2)} s; plain openai script: ${median(b).toFixed(2)} s; ratio ${(median(a) / median(b)).toFixed(2)}x (target <= 1.25x)`,
  );
}

const cleanups = new Cleanups();
try {
  await main(cleanups);
} finally {
  await cleanups.run();
}
