import { z } from 'zod';
import type { Grader } from '../../activities/sweep/graders.js';
import { DEFAULT_POLICY_TEMPLATE, DEFAULT_SCORE_TEMPLATE, DEFAULT_SELECT_TEMPLATE, templateIssues } from '../../activities/sweep/prompts.js';
import { usesJudge, type Strategy } from '../../activities/sweep/selection.js';
import { dataRefSchema } from '../artifacts.js';
import { registerStageKind, type SpecIssue } from '../kinds.js';

const STRATEGY_KINDS = ['mc', 'knockout', 'pairwise', 'score', 'random', 'majority', 'oracle'] as const;

/**
 * A selection strategy: a kind name, or an object with options:
 * `mc` (all N candidates in one multiple-choice prompt; only N ≤ k), `knockout` (groups of k,
 * winners advance, seeded bracket), `pairwise` (round robin, most wins), `score` (each answer
 * scored 1–10, the highest wins), `random`, `majority` (most frequent normalized final answer),
 * `oracle` (the best by the grader: the upper bound). `positions: cyclic` judges every rotation
 * of a multiple-choice prompt (majority of the picks); `swap: true` judges both orders of a pair.
 */
const strategySchema = z.union([
  z.enum(STRATEGY_KINDS),
  z.strictObject({
    kind: z.enum(STRATEGY_KINDS),
    /** The curve's name (default: the kind, or `<kind>-k<k>` when k is given). */
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/)
      .optional(),
    k: z.number().int().min(2).max(26).optional(),
    positions: z.enum(['one', 'cyclic']).optional(),
    swap: z.boolean().optional(),
  }),
]);

const graderSchema = z.union([
  z.enum(['exact', 'normalized', 'mc-letter']),
  z.strictObject({ kind: z.literal('numeric'), tolerance: z.number().min(0).default(0), relative: z.boolean().default(false) }),
  z.strictObject({
    kind: z.literal('llm'),
    /** The grader endpoint under `endpoints:`. */
    endpoint: z.string().min(1),
    /** Grades per answer, averaged (MM-Vet's num_run). */
    num_runs: z.number().int().min(1).max(20).default(1),
    /** Attempts per grade: the first at temperature 0, each retry after an unreadable reply `retry_temperature_step` warmer; 0.0 after the last. */
    max_attempts: z.number().int().min(1).max(10).default(5),
    retry_temperature_step: z.number().min(0).max(2).default(0.5),
    max_tokens: z.number().int().positive().default(16),
  }),
]);

/**
 * `sweep` (METHOD.md §6): inference-time scaling. A policy samples `n_max` answers per question
 * once; every N of `n` selects among nested subsets of that pool (the first N, plus `resamples`
 * seeded draws of N of the n_max) with each strategy; a grader scores every answer. Output: the
 * `curve` artifact, score vs N per strategy (total and per capability) with 95% CIs and costs.
 *
 *   - id: bon
 *     uses: sweep
 *     with: { items: easy, policy: policy, judge: judge, n: [1, 2, 4, 8, 16], strategies: [random, majority, { kind: knockout, k: 4 }, oracle] }
 */
export const sweepParams = z
  .object({
    /** qa-items: a dataset under `datasets:` (easy-vqa, qa-jsonl, mm-vet…) or `{ from: <stage> }`. */
    items: dataRefSchema,
    /** The policy endpoint: it answers each question n_max times. */
    policy: z.string().min(1),
    /** The judge endpoint of the judge strategies (mc, knockout, pairwise, score). */
    judge: z.string().min(1).optional(),
    /** How answers are scored: exact | normalized | mc-letter | { kind: numeric, tolerance } | { kind: llm, endpoint, num_runs } (MM-Vet protocol). */
    grader: graderSchema.default('normalized'),
    /** The N of the curve. */
    n: z.array(z.number().int().min(1).max(256)).min(1).default([1, 2, 4, 8, 16]),
    /** Samples per question in the pool (default: the largest N). */
    n_max: z.number().int().min(1).max(256).optional(),
    /** Seeded subsets per N besides the first N (they tighten the curve; N = n_max has only one subset). */
    resamples: z.number().int().min(0).max(64).default(4),
    strategies: z.array(strategySchema).min(1).default(['random', 'majority', 'oracle']),
    /** Group size of mc and knockout when a strategy names none. */
    k: z.number().int().min(2).max(26).default(4),
    /** Policy prompt with {question}. */
    policy_template: z.string().default(DEFAULT_POLICY_TEMPLATE),
    /** Multiple-choice judge prompt (the evaluate placeholders: {query}, {candidates}, {k}, {labels}, …). */
    select_template: z.string().default(DEFAULT_SELECT_TEMPLATE),
    /** Score prompt with {question} and {response}. */
    score_template: z.string().default(DEFAULT_SCORE_TEMPLATE),
    /** Optional system message of the policy. */
    system: z.string().optional(),
    policy_temperature: z.number().min(0).max(2).default(1),
    policy_max_tokens: z.number().int().positive().default(512),
    judge_temperature: z.number().min(0).max(2).default(0),
    judge_max_tokens: z.number().int().positive().default(1024),
    /** Bootstrap resamples (over questions) of the 95% intervals; 0: none. */
    bootstrap: z.number().int().min(0).max(100_000).default(1000),
    /** Questions per chunk, and chunks in flight. */
    chunk_size: z.number().int().positive().default(50),
    parallel: z.number().int().positive().max(64).default(4),
  })
  .strict();
export type SweepParams = z.infer<typeof sweepParams>;

/** The strategies with their names and options filled in. */
export function strategiesOf(params: Pick<SweepParams, 'strategies' | 'k'>): Strategy[] {
  return params.strategies.map((s) => {
    const o = typeof s === 'string' ? { kind: s } : s;
    const k = o.k ?? params.k;
    const name = o.name ?? (o.k !== undefined ? `${o.kind}-k${o.k}` : o.kind);
    switch (o.kind) {
      case 'mc':
      case 'knockout':
        return { name, kind: o.kind, k, positions: o.positions ?? 'one' };
      case 'pairwise':
        return { name, kind: 'pairwise', swap: o.swap ?? false };
      default:
        return { name, kind: o.kind };
    }
  });
}

/** The grader with its defaults filled in. */
export function graderOf(params: Pick<SweepParams, 'grader'>): Grader {
  const g = params.grader;
  return typeof g === 'string' ? { kind: g } : g;
}

/** The pool size: n_max, or the largest N. */
export function nMaxOf(params: Pick<SweepParams, 'n' | 'n_max'>): number {
  return params.n_max ?? Math.max(...params.n);
}

registerStageKind({
  kind: 'sweep',
  description: 'inference-time scaling: one pool of policy samples, best-of-N per strategy for many N, graded, a curve with CIs and costs',
  workflowType: 'sweepStage',
  params: sweepParams,
  endpoints: (p) => {
    const g = graderOf(p);
    return [...new Set([p.policy, ...(p.judge ? [p.judge] : []), ...(g.kind === 'llm' ? [g.endpoint] : [])])];
  },
  consumes: (p) => [{ param: 'items', ref: p.items, kind: 'qa-items' }],
  produces: { curve: 'curve' },
  check({ index, params }) {
    const at = `stages[${index}].with`;
    const issues: SpecIssue[] = [];
    const strategies = strategiesOf(params);
    const names = strategies.map((s) => s.name);
    names.forEach((n, j) => {
      if (names.indexOf(n) !== j) issues.push({ path: `${at}.strategies[${j}]`, message: `strategy "${n}" is listed twice: give one a name:` });
    });
    const judged = strategies.filter(usesJudge);
    if (judged.length > 0 && params.judge === undefined)
      issues.push({ path: `${at}.judge`, message: `strategies ${judged.map((s) => s.name).join(', ')} need a judge endpoint: add judge: <endpoint>` });
    const nMax = nMaxOf(params);
    params.n.forEach((n, j) => {
      if (n > nMax) issues.push({ path: `${at}.n[${j}]`, message: `N = ${n} is more than n_max = ${nMax}` });
      if (params.n.indexOf(n) !== j) issues.push({ path: `${at}.n[${j}]`, message: `N = ${n} is listed twice` });
    });
    strategies.forEach((s, j) => {
      if (s.kind === 'mc' && !params.n.some((n) => n <= s.k))
        issues.push({
          path: `${at}.strategies[${j}]`,
          message: `mc judges all N at once only when N ≤ k = ${s.k}; no N of the sweep is: use knockout, or a larger k`,
        });
    });
    for (const t of templateIssues({ policy: params.policy_template, select: params.select_template, score: params.score_template }))
      issues.push({ path: `${at}.${t.field}`, message: t.message });
    return issues;
  },
});
