/**
 * The `curve` of a sweep (pure): per strategy, N and capability, the mean score of the selected
 * answers ×100 with a 95% bootstrap interval over questions, and what the point costs.
 */
import { createRng } from '../evaluate/rng.js';

/** One replicate of one question at one (strategy, N): the selected answer's grade and what selecting it took. */
export interface ReplicateOutcome {
  grade: number;
  /** Distinct judge requests the selection used. */
  judgeCalls: number;
  /** Prompt + completion tokens of the N policy samples and of those judge requests. */
  tokens: number;
  costUsd: number;
}

export interface QuestionOutcomes {
  capabilities: readonly string[];
  /** By `${strategy}|${n}`: one outcome per replicate (absent: the strategy does not apply at N). */
  points: ReadonlyMap<string, readonly ReplicateOutcome[]>;
}

/** A point of the curve, as stored in `curve_points`. */
export interface CurvePoint {
  strategy: string;
  n: number;
  /** `total`, or a capability tag. */
  capability: string;
  questions: number;
  /** Mean grade ×100, and its 95% percentile bootstrap interval over questions (null without bootstrap). */
  score: number;
  ciLow: number | null;
  ciHigh: number | null;
  /** What one best-of-N run over these questions costs (means over replicates): policy samples, judge calls, tokens, USD. */
  policySamples: number;
  judgeCalls: number;
  tokens: number;
  costUsd: number;
}

export const TOTAL = 'total';

function percentile(sorted: readonly number[], p: number): number {
  const pos = p * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The curve's points: strategies in the given order, then N ascending, then `total` before capabilities (sorted). */
export function computeCurve(opts: {
  strategies: readonly string[];
  ns: readonly number[];
  questions: readonly QuestionOutcomes[];
  bootstrap: number;
  seed: number;
}): CurvePoint[] {
  const caps = [...new Set(opts.questions.flatMap((q) => q.capabilities))].sort();
  const points: CurvePoint[] = [];
  for (const strategy of opts.strategies) {
    for (const n of opts.ns) {
      const key = `${strategy}|${n}`;
      for (const capability of [TOTAL, ...caps]) {
        const qs = opts.questions.filter((q) => q.points.has(key) && (capability === TOTAL || q.capabilities.includes(capability)));
        if (qs.length === 0) continue;
        const per = qs.map((q) => {
          const reps = q.points.get(key)!;
          return {
            grade: mean(reps.map((r) => r.grade)),
            calls: mean(reps.map((r) => r.judgeCalls)),
            tokens: mean(reps.map((r) => r.tokens)),
            cost: mean(reps.map((r) => r.costUsd)),
          };
        });
        const grades = per.map((p) => p.grade);
        let ciLow: number | null = null;
        let ciHigh: number | null = null;
        if (opts.bootstrap > 0) {
          const rng = createRng('judgeflow/sweep/bootstrap', opts.seed, strategy, n, capability);
          const means: number[] = [];
          for (let b = 0; b < opts.bootstrap; b++) {
            let s = 0;
            for (let i = 0; i < grades.length; i++) s += grades[rng.nextInt(grades.length)]!;
            means.push((100 * s) / grades.length);
          }
          means.sort((a, b) => a - b);
          ciLow = percentile(means, 0.025);
          ciHigh = percentile(means, 0.975);
        }
        points.push({
          strategy,
          n,
          capability,
          questions: qs.length,
          score: 100 * mean(grades),
          ciLow,
          ciHigh,
          policySamples: qs.length * n,
          judgeCalls: per.reduce((a, p) => a + p.calls, 0),
          tokens: per.reduce((a, p) => a + p.tokens, 0),
          costUsd: per.reduce((a, p) => a + p.cost, 0),
        });
      }
    }
  }
  return points;
}
