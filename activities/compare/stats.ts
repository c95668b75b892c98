/**
 * Paired statistics for `judgeflow compare`: two judges (or two settings) on the same items.
 * Pure functions; definitions in activities/compare/README.md.
 */
import { majority } from '../evaluate/metrics.js';
import { createRng } from '../evaluate/rng.js';

/** One judge sample as stored in `judgments` (what per-item scores need). */
export interface JudgmentSample {
  itemKey: string;
  view: number;
  sample: number;
  /** Candidate the judge chose; null: unparseable or failed. */
  chosenCandidate: number | null;
  outputTokens: number | null;
}

export type Policy = 'excluded' | 'wrong';

/** Per-item values of one side. */
export interface ItemValues {
  /** Mean correctness over the item's views (majority over samples per view); NaN when excluded. */
  accuracy: number;
  /** Mean output tokens over the item's samples (NaN: none). */
  outputTokens: number;
}

/**
 * Per-item accuracy under `policy` (as the evaluate metrics define it: majority vote per view,
 * mean over views; `excluded` drops unparseable views and items with none left, `wrong` counts
 * them 0) and mean output tokens.
 */
export function itemValues(samples: Iterable<JudgmentSample>, best: ReadonlyMap<string, number>, policy: Policy): Map<string, ItemValues> {
  const byItem = new Map<string, { views: Map<number, [number, number][]>; tokens: number; tokenN: number }>();
  for (const s of samples) {
    let it = byItem.get(s.itemKey);
    if (!it) byItem.set(s.itemKey, (it = { views: new Map(), tokens: 0, tokenN: 0 }));
    const votes = it.views.get(s.view) ?? [];
    it.views.set(s.view, votes);
    if (s.chosenCandidate !== null) votes.push([s.sample, s.chosenCandidate]);
    if (s.outputTokens !== null) {
      it.tokens += s.outputTokens;
      it.tokenN++;
    }
  }
  const out = new Map<string, ItemValues>();
  for (const [key, it] of byItem) {
    const b = best.get(key);
    if (b === undefined) continue;
    let correct = 0;
    let parseable = 0;
    for (const votes of it.views.values()) {
      const m = majority(votes);
      if (m === null) continue;
      parseable++;
      if (m === b) correct++;
    }
    const accuracy = policy === 'excluded' ? (parseable > 0 ? correct / parseable : Number.NaN) : correct / it.views.size;
    out.set(key, { accuracy, outputTokens: it.tokenN > 0 ? it.tokens / it.tokenN : Number.NaN });
  }
  return out;
}

/** Exact two-sided McNemar test on the discordant pairs: b (A right, B wrong) and c (A wrong, B right). */
export function mcnemarExact(b: number, c: number): number {
  const n = b + c;
  if (n === 0) return 1;
  const k = Math.min(b, c);
  // P(X ≤ k) for X ~ Binomial(n, 1/2), summed in log space (n can be thousands).
  const lf = logFactorials(n);
  let logSum = Number.NEGATIVE_INFINITY;
  for (let i = 0; i <= k; i++) {
    const lp = lf[n]! - lf[i]! - lf[n - i]! - n * Math.LN2;
    logSum = logAdd(logSum, lp);
  }
  return Math.min(1, 2 * Math.exp(logSum));
}

function logFactorials(n: number): Float64Array {
  const out = new Float64Array(n + 1);
  for (let i = 2; i <= n; i++) out[i] = out[i - 1]! + Math.log(i);
  return out;
}

function logAdd(a: number, b: number): number {
  if (a === Number.NEGATIVE_INFINITY) return b;
  const m = Math.max(a, b);
  return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

/** Linear interpolation between order statistics (R type 7). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

export interface PairedBootstrap {
  /** mean(B − A) over the pairs. */
  delta: number;
  /** 95% percentile interval of the resampled mean differences. */
  ci: [number, number];
  /** Two-sided: 2 · min(share of resampled deltas ≤ 0, share ≥ 0), capped at 1. */
  p: number;
}

/**
 * Paired bootstrap of the mean difference: `resamples` times, draw n pairs with replacement
 * (index = rng.nextInt(n), rng = createRng('judgeflow/compare/paired', seed)) and take the mean of
 * b − a over the draw.
 */
export function pairedBootstrap(a: readonly number[], b: readonly number[], resamples: number, seed: number | string): PairedBootstrap {
  if (a.length !== b.length) throw new RangeError('pairedBootstrap: both sides need the same number of pairs');
  const n = a.length;
  const d = Float64Array.from(a, (x, i) => b[i]! - x);
  const delta = n > 0 ? d.reduce((s, x) => s + x, 0) / n : Number.NaN;
  if (n === 0 || resamples <= 0) return { delta, ci: [Number.NaN, Number.NaN], p: Number.NaN };
  const rng = createRng('judgeflow/compare/paired', seed);
  const means = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += d[rng.nextInt(n)]!;
    means[r] = s / n;
  }
  let le = 0;
  let ge = 0;
  for (const m of means) {
    if (m <= 0) le++;
    if (m >= 0) ge++;
  }
  means.sort();
  return { delta, ci: [quantile(means, 0.025), quantile(means, 0.975)], p: Math.min(1, (2 * Math.min(le, ge)) / resamples) };
}

export interface PairedAccuracy {
  /** Items judged on both sides (under the policy: with a score on both). */
  shared: number;
  a: number;
  b: number;
  bootstrap: PairedBootstrap;
  /** McNemar on the shared items scored 0 or 1 on both sides (every item with one view and one sample). */
  mcnemar: { items: number; b: number; c: number; p: number };
}

/** Paired comparison of accuracy: B against A on the items both judged. */
export function pairedAccuracy(
  a: ReadonlyMap<string, ItemValues>,
  b: ReadonlyMap<string, ItemValues>,
  opts: { resamples: number; seed: number | string },
): PairedAccuracy {
  return paired(a, b, 'accuracy', opts) as PairedAccuracy;
}

/** Paired comparison of a per-item mean (`outputTokens`), bootstrap only. */
export function pairedMean(
  a: ReadonlyMap<string, ItemValues>,
  b: ReadonlyMap<string, ItemValues>,
  field: keyof ItemValues,
  opts: { resamples: number; seed: number | string },
): Omit<PairedAccuracy, 'mcnemar'> {
  const { mcnemar: _, ...rest } = paired(a, b, field, opts);
  return rest;
}

function paired(
  a: ReadonlyMap<string, ItemValues>,
  b: ReadonlyMap<string, ItemValues>,
  field: keyof ItemValues,
  opts: { resamples: number; seed: number | string },
): PairedAccuracy {
  // Shared items in a fixed order (sorted keys) so the bootstrap draws are reproducible.
  const keys = [...a.keys()].filter((k) => b.has(k) && !Number.isNaN(a.get(k)![field]) && !Number.isNaN(b.get(k)![field])).sort();
  const xa = keys.map((k) => a.get(k)![field]);
  const xb = keys.map((k) => b.get(k)![field]);
  const mean = (x: number[]) => (x.length ? x.reduce((s, v) => s + v, 0) / x.length : Number.NaN);
  let bCount = 0;
  let cCount = 0;
  let binary = 0;
  keys.forEach((_, i) => {
    const va = xa[i]!;
    const vb = xb[i]!;
    if ((va !== 0 && va !== 1) || (vb !== 0 && vb !== 1)) return;
    binary++;
    if (va === 1 && vb === 0) bCount++;
    if (va === 0 && vb === 1) cCount++;
  });
  return {
    shared: keys.length,
    a: mean(xa),
    b: mean(xb),
    bootstrap: pairedBootstrap(xa, xb, opts.resamples, opts.seed),
    mcnemar: { items: binary, b: bCount, c: cCount, p: mcnemarExact(bCount, cCount) },
  };
}

/** Standard normal CDF Φ(x), from erfc (Numerical Recipes' Chebyshev fit, |relative error| < 1.2e-7). */
export function normalCdf(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

/** A share k/n with its 95% Wilson score interval (null bounds when n = 0). */
export interface Proportion {
  k: number;
  n: number;
  rate: number;
  ciLow: number | null;
  ciHigh: number | null;
}

const Z95 = 1.959963984540054;

export function wilson(k: number, n: number): Proportion {
  if (n === 0) return { k, n, rate: Number.NaN, ciLow: null, ciHigh: null };
  const p = k / n;
  const z2 = Z95 * Z95;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (Z95 * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return { k, n, rate: p, ciLow: Math.max(0, centre - half), ciHigh: Math.min(1, centre + half) };
}

export interface TwoProportion {
  /** pB − pA. */
  delta: number;
  /** 95% Wald interval of the difference (unpooled variance). */
  ci: [number, number];
  /** Two-sided z-test with the pooled proportion; 1 when both shares are 0 or both 1. */
  p: number;
}

/** Two independent shares kA/nA and kB/nB (different denominators: e.g. traces tried on each side). */
export function twoProportion(kA: number, nA: number, kB: number, nB: number): TwoProportion {
  if (nA === 0 || nB === 0) return { delta: Number.NaN, ci: [Number.NaN, Number.NaN], p: Number.NaN };
  const pA = kA / nA;
  const pB = kB / nB;
  const delta = pB - pA;
  const se = Math.sqrt((pA * (1 - pA)) / nA + (pB * (1 - pB)) / nB);
  const pooled = (kA + kB) / (nA + nB);
  const sePooled = Math.sqrt(pooled * (1 - pooled) * (1 / nA + 1 / nB));
  const p = sePooled === 0 ? 1 : Math.min(1, 2 * (1 - normalCdf(Math.abs(delta) / sePooled)));
  return { delta, ci: [delta - Z95 * se, delta + Z95 * se], p };
}

/**
 * Paired 0/1 outcomes (or any per-item values) of two sides on the items both have, in sorted key
 * order: means, paired bootstrap of the difference, and exact McNemar on the 0/1 pairs.
 */
export function pairedValues(
  a: ReadonlyMap<string, number>,
  b: ReadonlyMap<string, number>,
  opts: { resamples: number; seed: number | string },
): PairedAccuracy {
  const wrap = (m: ReadonlyMap<string, number>) => new Map([...m].map(([k, v]) => [k, { accuracy: v, outputTokens: Number.NaN }]));
  return paired(wrap(a), wrap(b), 'accuracy', opts);
}
