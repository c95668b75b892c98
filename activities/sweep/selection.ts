/**
 * The pure core of `sweep` selection (METHOD.md §6): which samples of the pool each N looks at,
 * and how each strategy picks one of them. No I/O: a strategy is a function of the candidate set
 * and the verdicts known so far; it either returns the chosen sample or the judge requests it
 * still needs. The stage calls it round after round until nothing is needed.
 *
 * Judge requests are named by what they show (`mc:3,0,7` = samples 3, 0 and 7 in that display
 * order; `score:5`), and display orders depend only on the candidate SET (seeded), so every N,
 * replicate and strategy that judges the same set asks the very same request: it is made once.
 */
import { createRng } from '../evaluate/rng.js';

/** A selection strategy as the spec names it (spec/kinds/sweep.ts normalizes the spec's forms). */
export type Strategy =
  | { name: string; kind: 'mc'; k: number; positions: 'one' | 'cyclic' }
  | { name: string; kind: 'knockout'; k: number; positions: 'one' | 'cyclic' }
  | { name: string; kind: 'pairwise'; swap: boolean }
  | { name: string; kind: 'score' }
  | { name: string; kind: 'random' }
  | { name: string; kind: 'majority' }
  | { name: string; kind: 'oracle' };

export type StrategyKind = Strategy['kind'];

/** Whether the strategy calls the judge. */
export function usesJudge(s: Strategy): boolean {
  return s.kind === 'mc' || s.kind === 'knockout' || s.kind === 'pairwise' || s.kind === 'score';
}

/** Fisher–Yates with a seeded stream. */
function shuffled<T>(items: readonly T[], ...seed: (string | number)[]): T[] {
  const rng = createRng(...seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * The candidate sets of one question at N: replicate 0 is the first N samples; replicates
 * 1..resamples are seeded draws of N distinct samples out of nMax. Each set is sorted. A set
 * depends on (seed, question, N, replicate) only, never on the other N of the sweep.
 */
export function candidateSets(seed: number, question: string, n: number, nMax: number, resamples: number): number[][] {
  const all = Array.from({ length: nMax }, (_, i) => i);
  const sets = [all.slice(0, n)];
  for (let r = 1; r <= resamples; r++)
    sets.push(
      shuffled(all, 'judgeflow/sweep/subset', seed, question, n, r)
        .slice(0, n)
        .sort((a, b) => a - b),
    );
  return sets;
}

const setKey = (set: readonly number[]) => [...set].sort((a, b) => a - b).join(',');

/** The display order of a set: a seeded shuffle of the set (not of how it was reached). */
export function canonicalOrder(seed: number, question: string, set: readonly number[]): number[] {
  return shuffled(
    [...set].sort((a, b) => a - b),
    'judgeflow/sweep/order',
    seed,
    question,
    setKey(set),
  );
}

/** A judge request: `mc` shows `order` (sample indexes in display order); `score` shows one sample. */
export type JudgeRequest = { key: string; kind: 'mc'; order: number[] } | { key: string; kind: 'score'; sample: number };

export function mcRequest(order: readonly number[]): JudgeRequest {
  return { key: `mc:${order.join(',')}`, kind: 'mc', order: [...order] };
}
export function scoreRequest(sample: number): JudgeRequest {
  return { key: `score:${sample}`, kind: 'score', sample };
}

/** What a finished judge request said: the chosen display position or the score; null when unreadable or failed. */
export type Verdict = { position: number | null } | { score: number | null };

export interface SelectionContext {
  seed: number;
  /** The question's item key. */
  question: string;
  /** Per sample: the normalized final answer ('' when none could be read). */
  answers: readonly string[];
  /** Per sample: the grader's score in [0, 1]. */
  grades: readonly number[];
  /** The verdict of a finished request, or undefined when it has not been made yet. */
  verdict: (key: string) => Verdict | undefined;
}

export type SelectionResult =
  | { status: 'done'; sample: number; calls: string[] }
  | { status: 'needs'; requests: JudgeRequest[] }
  /** The strategy does not apply at this N (multiple choice with N > K). */
  | { status: 'n/a' };

/** A seeded pick among tied items; the stream is named by the strategy and the set. */
function tieBreak<T>(items: readonly T[], ctx: SelectionContext, what: string, set: readonly number[]): T {
  if (items.length === 1) return items[0]!;
  return items[createRng('judgeflow/sweep/tie', ctx.seed, ctx.question, what, setKey(set)).nextInt(items.length)]!;
}

/** The samples with the highest value; ties broken by the seed. */
function argmax(set: readonly number[], value: (s: number) => number, ctx: SelectionContext, what: string): number {
  let best = -Infinity;
  let tied: number[] = [];
  for (const s of set) {
    const v = value(s);
    if (v > best) [best, tied] = [v, [s]];
    else if (v === best) tied.push(s);
  }
  return tieBreak(tied, ctx, what, set);
}

/** One multiple-choice judgment of a set: every view (one, or each rotation), majority of the picks. */
function judgeSet(set: readonly number[], positions: 'one' | 'cyclic', ctx: SelectionContext, what: string): SelectionResult {
  if (set.length === 1) return { status: 'done', sample: set[0]!, calls: [] };
  const order = canonicalOrder(ctx.seed, ctx.question, set);
  const views = positions === 'one' ? [order] : order.map((_, r) => [...order.slice(r), ...order.slice(0, r)]);
  const requests = views.map(mcRequest);
  const missing = requests.filter((r) => ctx.verdict(r.key) === undefined);
  if (missing.length > 0) return { status: 'needs', requests: missing };
  const votes = new Map<number, number>(set.map((s) => [s, 0]));
  views.forEach((view, i) => {
    const v = ctx.verdict(requests[i]!.key) as { position: number | null };
    if (v.position !== null && v.position < view.length) votes.set(view[v.position]!, votes.get(view[v.position]!)! + 1);
  });
  return { status: 'done', sample: argmax(set, (s) => votes.get(s)!, ctx, what), calls: requests.map((r) => r.key) };
}

/**
 * The sample a strategy picks from `set` (sorted sample indexes), or the judge requests it needs
 * first. Unreadable or failed judgments count as no vote (knockout, multiple choice, pairwise:
 * half a win to each) or score 0; every tie is broken by the seed.
 */
export function select(strategy: Strategy, set: readonly number[], ctx: SelectionContext): SelectionResult {
  switch (strategy.kind) {
    case 'oracle':
      return { status: 'done', sample: set.reduce((b, s) => (ctx.grades[s]! > ctx.grades[b]! ? s : b), set[0]!), calls: [] };
    case 'random':
      return { status: 'done', sample: tieBreak(set, ctx, 'random', set), calls: [] };
    case 'majority': {
      const counts = new Map<string, number[]>();
      for (const s of set) {
        const a = ctx.answers[s] ?? '';
        if (a !== '') counts.set(a, [...(counts.get(a) ?? []), s]);
      }
      if (counts.size === 0) return { status: 'done', sample: tieBreak(set, ctx, 'majority', set), calls: [] };
      const most = Math.max(...[...counts.values()].map((v) => v.length));
      const top = [...counts.keys()].filter((a) => counts.get(a)!.length === most).sort();
      return { status: 'done', sample: counts.get(tieBreak(top, ctx, 'majority', set))![0]!, calls: [] };
    }
    case 'mc':
      if (set.length > strategy.k) return { status: 'n/a' };
      return judgeSet(set, strategy.positions, ctx, strategy.name);
    case 'knockout': {
      let round = shuffled([...set], 'judgeflow/sweep/bracket', ctx.seed, ctx.question, setKey(set));
      const calls: string[] = [];
      while (round.length > 1) {
        const winners: number[] = [];
        const needs: JudgeRequest[] = [];
        for (let g = 0; g < round.length; g += strategy.k) {
          const r = judgeSet(round.slice(g, g + strategy.k), strategy.positions, ctx, strategy.name);
          if (r.status === 'needs') needs.push(...r.requests);
          else if (r.status === 'done') {
            winners.push(r.sample);
            calls.push(...r.calls);
          }
        }
        if (needs.length > 0) return { status: 'needs', requests: needs };
        round = winners;
      }
      return { status: 'done', sample: round[0]!, calls };
    }
    case 'pairwise': {
      if (set.length === 1) return { status: 'done', sample: set[0]!, calls: [] };
      const requests: JudgeRequest[] = [];
      for (let i = 0; i < set.length; i++) {
        for (let j = i + 1; j < set.length; j++) {
          const order = canonicalOrder(ctx.seed, ctx.question, [set[i]!, set[j]!]);
          requests.push(mcRequest(order));
          if (strategy.swap) requests.push(mcRequest([order[1]!, order[0]!]));
        }
      }
      const missing = requests.filter((r) => ctx.verdict(r.key) === undefined);
      if (missing.length > 0) return { status: 'needs', requests: missing };
      const wins = new Map<number, number>(set.map((s) => [s, 0]));
      for (const r of requests) {
        const order = (r as { order: number[] }).order;
        const v = ctx.verdict(r.key) as { position: number | null };
        if (v.position === 0 || v.position === 1) wins.set(order[v.position]!, wins.get(order[v.position]!)! + 1);
        else for (const s of order) wins.set(s, wins.get(s)! + 0.5);
      }
      return { status: 'done', sample: argmax(set, (s) => wins.get(s)!, ctx, strategy.name), calls: requests.map((r) => r.key) };
    }
    case 'score': {
      if (set.length === 1) return { status: 'done', sample: set[0]!, calls: [] };
      const requests = set.map(scoreRequest);
      const missing = requests.filter((r) => ctx.verdict(r.key) === undefined);
      if (missing.length > 0) return { status: 'needs', requests: missing };
      const score = (s: number) => (ctx.verdict(`score:${s}`) as { score: number | null }).score ?? 0;
      return { status: 'done', sample: argmax(set, score, ctx, strategy.name), calls: requests.map((r) => r.key) };
    }
  }
}

/** Judge calls a knockout in groups of k makes on n candidates (byes cost nothing). */
export function knockoutCalls(n: number, k: number): number {
  let calls = 0;
  let left = n;
  while (left > 1) {
    const groups = Math.ceil(left / k);
    calls += Math.floor(left / k) + (left % k > 1 ? 1 : 0);
    left = groups;
  }
  return calls;
}
