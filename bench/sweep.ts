/**
 * Sweep benchmark: the whole `sweep` stage on Temporal vs a plain `openai` script that samples and
 * judges the same way. easy-vqa, 500 questions, a pool of 16 samples each, N = 1, 2, 4, 8, 16 with
 * 4 resamples, three strategies (majority, knockout in groups of 4, per-response score), graded
 * by normalized match, simulator latency 50 ms, concurrency 64.
 *
 *  (a) judgeflow: launch an experiment with one `sweep` stage and wait for it: dataset import,
 *      request rows, the gateway (cache, limits), grading and selection rounds, the curve with
 *      bootstrap CIs, everything in Postgres.
 *  (b) plain: what a researcher's script does: the same prompts (the same pure selection code, so
 *      the same requests), the pool at concurrency 64, then rounds of judge calls until every
 *      selection is made, results in memory.
 *
 * Prints both times, the ratio plain/judgeflow (target ≥ 0.8) and both request counts, counted at
 * the simulator. Run once: the machine is shared.
 *   npx tsx bench/sweep.ts [--questions 500] [--latency 50] [--concurrency 64]
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import YAML from 'yaml';
import { loadQaDataset, locateEasyVqa } from '../activities/datasets/qa.js';
import { parseChoice } from '../activities/evaluate/parse.js';
import { extractFinalAnswer, gradeByRule, normalizeAnswer } from '../activities/sweep/graders.js';
import {
  DEFAULT_POLICY_TEMPLATE,
  DEFAULT_SCORE_TEMPLATE,
  DEFAULT_SELECT_TEMPLATE,
  parseScore,
  renderPolicyPrompt,
  renderScorePrompt,
  renderSelectPrompt,
} from '../activities/sweep/prompts.js';
import { candidateSets, select, type JudgeRequest, type Strategy, type Verdict } from '../activities/sweep/selection.js';
import { launchRun } from '../cli/launch.js';
import '../spec/builtin.js';
import { loadSpec } from '../spec/load.js';
import { Cleanups, startJudgeflowBench, watchEventLoop } from './lib.js';

const { values: args } = parseArgs({ options: { questions: { type: 'string' }, latency: { type: 'string' }, concurrency: { type: 'string' } } });
const QUESTIONS = Number(args.questions ?? 500);
const LATENCY = Number(args.latency ?? 50);
const CONCURRENCY = Number(args.concurrency ?? 64);
const N_MAX = 16;
const NS = [1, 2, 4, 8, 16];
const RESAMPLES = 4;
const STRATEGIES: Strategy[] = [
  { name: 'majority', kind: 'majority' },
  { name: 'knockout-k4', kind: 'knockout', k: 4, positions: 'one' },
  { name: 'score', kind: 'score' },
];

async function simRequests(url: string): Promise<number> {
  const res = await fetch(url.replace(/\/v1$/, '/sim/stats'));
  return ((await res.json()) as { requests: number }).requests;
}

/** Runs `jobs` at `CONCURRENCY` in flight. */
async function pool<T>(jobs: T[], fn: (job: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < jobs.length) await fn(jobs[next++]!);
    }),
  );
}

async function plainScript(url: string, seed: number): Promise<{ seconds: number; requests: number; scores: Record<string, number> }> {
  const t0 = performance.now();
  const { items } = await loadQaDataset({ format: 'easy-vqa', split: 'test', limit: QUESTIONS });
  const client = new OpenAI({ baseURL: url, apiKey: 'EMPTY', maxRetries: 2, timeout: 120_000 });
  let requests = 0;
  const call = async (
    model: string,
    messages: OpenAI.ChatCompletionMessageParam[],
    params: { temperature: number; max_tokens: number; seed: number },
  ): Promise<string | null> => {
    requests++;
    try {
      const res = await client.chat.completions.create({ model, messages, ...params });
      return res.choices[0]?.message.content ?? '';
    } catch {
      return null;
    }
  };
  const withImage = (item: (typeof items)[number], text: string): OpenAI.ChatCompletionMessageParam[] => [
    {
      role: 'user',
      content: [
        { type: 'image_url', image_url: { url: `data:${item.image.mime};base64,${Buffer.from(item.image.bytes).toString('base64')}` } },
        { type: 'text', text },
      ],
    },
  ];
  // The pool: 16 samples per question, seeds seed + s.
  const texts = items.map(() => new Array<string | null>(N_MAX).fill(null));
  const jobs = items.flatMap((_, i) => Array.from({ length: N_MAX }, (_, s) => [i, s] as const));
  await pool(jobs, async ([i, s]) => {
    const item = items[i]!;
    const out = await call('policy', withImage(item, renderPolicyPrompt(DEFAULT_POLICY_TEMPLATE, item.question)), {
      temperature: 1,
      max_tokens: 512,
      seed: seed + s,
    });
    texts[i]![s] = out === null ? null : out.replace(/<think>[\s\S]*?<\/think>/gi, '').trim();
  });
  const answers = texts.map((ts) => ts.map((t) => (t === null ? '' : normalizeAnswer(extractFinalAnswer(t)))));
  const grades = texts.map((ts, i) => ts.map((t) => (t === null ? 0 : gradeByRule({ kind: 'normalized' }, extractFinalAnswer(t), items[i]!.answer))));
  // Selection rounds: every (question, N, replicate, strategy) until no judge request is missing.
  const verdicts = items.map(() => new Map<string, Verdict>());
  const scores: Record<string, number> = {};
  for (;;) {
    const needs = new Map<string, { i: number; req: JudgeRequest }>();
    const sums = new Map<string, number[]>();
    items.forEach((item, i) => {
      const ctx = { seed, question: item.itemKey, answers: answers[i]!, grades: grades[i]!, verdict: (k: string) => verdicts[i]!.get(k) };
      for (const n of NS) {
        candidateSets(seed, item.itemKey, n, N_MAX, n === N_MAX ? 0 : RESAMPLES).forEach((set) => {
          for (const st of STRATEGIES) {
            const r = select(st, set, ctx);
            if (r.status === 'needs') for (const req of r.requests) needs.set(`${i}|${req.key}`, { i, req });
            else if (r.status === 'done') (sums.get(`${st.name}|${n}`) ?? sums.set(`${st.name}|${n}`, []).get(`${st.name}|${n}`)!).push(grades[i]![r.sample]!);
          }
        });
      }
    });
    if (needs.size === 0) {
      for (const [k, v] of sums) scores[k] = (100 * v.reduce((a, b) => a + b, 0)) / v.length;
      break;
    }
    await pool([...needs.values()], async ({ i, req }) => {
      const item = items[i]!;
      const cands = texts[i]!.map((t) => t ?? '(no answer)');
      const text =
        req.kind === 'mc'
          ? renderSelectPrompt(
              DEFAULT_SELECT_TEMPLATE,
              item.question,
              req.order.map((s) => cands[s]!),
            )
          : renderScorePrompt(DEFAULT_SCORE_TEMPLATE, item.question, cands[req.sample]!);
      const out = await call('judge', withImage(item, text), { temperature: 0, max_tokens: 1024, seed });
      verdicts[i]!.set(
        req.key,
        req.kind === 'mc'
          ? { position: out === null ? null : parseChoice(out, req.order.length, 'letters').position }
          : { score: out === null ? null : (parseScore(out) ?? null) },
      );
    });
  }
  return { seconds: (performance.now() - t0) / 1000, requests, scores };
}

async function main(cleanups: Cleanups): Promise<void> {
  const { handle, url, client, taskQueue } = await startJudgeflowBench(cleanups, {
    name: 'sweep',
    simulator: {
      seed: 4,
      latency: { kind: 'fixed', ms: LATENCY },
      models: { policy: { behaviour: 'policy', accuracy: 0.5, answers: 'easy-vqa:test' }, judge: { behaviour: 'judge', accuracy: 0.7, think: false } },
    },
  });
  const dir = mkdtempSync(join(tmpdir(), 'jf-bench-sweep-'));

  const judgeflowRun = async (seed: number, questions: number): Promise<{ seconds: number; requests: number; scores: Record<string, number>; lag: string }> => {
    const path = join(dir, `s${seed}.yaml`);
    writeFileSync(
      path,
      YAML.stringify({
        name: `bench-sweep-${seed}-${Date.now()}`,
        seed,
        endpoints: {
          policy: { base_url: url, model: 'policy', concurrency: CONCURRENCY, timeout_s: 120 },
          judge: { base_url: url, model: 'judge', concurrency: CONCURRENCY, timeout_s: 120 },
        },
        datasets: { easy: { format: 'easy-vqa', split: 'test', limit: questions } },
        stages: [
          {
            id: 'bon',
            uses: 'sweep',
            with: {
              items: 'easy',
              policy: 'policy',
              judge: 'judge',
              n: NS,
              n_max: N_MAX,
              resamples: RESAMPLES,
              strategies: ['majority', { kind: 'knockout', k: 4 }, 'score'],
              bootstrap: 1000,
            },
          },
        ],
      }),
    );
    const before = await simRequests(url);
    const t0 = performance.now();
    const lagOf = watchEventLoop();
    const { runId } = await launchRun({ loaded: await loadSpec(path), db: handle.db, client, taskQueue });
    await client.workflow.getHandle(runId).result();
    const seconds = (performance.now() - t0) / 1000;
    const pts = await handle.db.$client.query<{ strategy: string; n: number; score: number }>(
      `select p.strategy, p.n, p.score from curve_points p join artifacts a on a.id = p.artifact_id where a.run_id = $1 and p.capability = 'total'`,
      [runId],
    );
    return {
      seconds,
      requests: (await simRequests(url)) - before,
      scores: Object.fromEntries(pts.rows.map((r) => [`${r.strategy}|${r.n}`, r.score])),
      lag: lagOf(),
    };
  };

  // The plain script's image files: read once here so its timing holds no first-read of the package folder.
  readFileSync(join(locateEasyVqa(), 'test', 'questions.json'));
  console.log(
    `sweep benchmark: easy-vqa ${QUESTIONS} questions, pool of ${N_MAX}, N = ${NS.join(', ')} (${RESAMPLES} resamples), strategies ${STRATEGIES.map((s) => s.name).join(', ')}, simulator latency ${LATENCY} ms, concurrency ${CONCURRENCY}`,
  );
  // Warm-up: workflow bundle, JIT, connections, the one-time dataset import.
  await judgeflowRun(1, 20);
  const j = await judgeflowRun(100, QUESTIONS);
  console.log(`  judgeflow sweep stage: ${j.seconds.toFixed(1)} s, ${j.requests} requests at the simulator; ${j.lag}`);
  const p = await plainScript(url, 200);
  console.log(`  plain openai script:   ${p.seconds.toFixed(1)} s, ${p.requests} requests at the simulator`);
  const show = (s: Record<string, number>) =>
    ['majority|16', 'knockout-k4|16', 'score|16'].map((k) => `${k.replace('|', ' N=')} ${s[k]?.toFixed(1) ?? '?'}`).join(', ');
  console.log(`  scores (different seeds, so close but not equal): judgeflow ${show(j.scores)}; plain ${show(p.scores)}`);
  console.log(`\nratio plain/judgeflow time = ${(p.seconds / j.seconds).toFixed(2)} (target ≥ 0.8); requests: judgeflow ${j.requests}, plain ${p.requests}`);
}

const cleanups = new Cleanups();
try {
  await main(cleanups);
} finally {
  await cleanups.run();
}
