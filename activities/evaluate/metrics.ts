import { createRng } from './rng.js';

/** One judge sample on one view of one item (a row of the `judgments` table). */
export interface JudgmentRecord {
  itemKey: string;
  category: string;
  subset: string;
  /** Index of the view (candidate order) within the item's views. */
  view: number;
  /** Index of the sample within the view (k samples per view for majority voting). */
  sample: number;
  /** permutation[p] = index of the candidate shown at position p. */
  permutation: readonly number[];
  /** Display position the judge chose; null when its output could not be parsed. */
  chosenPosition: number | null;
  /** The request itself failed (no output). Counts like an unparseable sample. */
  failed?: boolean;
  outputTokens?: number;
  latencyMs?: number;
  /** The output matches the stage's `answer_format` (a trained judge's format); unset when there is none. */
  formatted?: boolean;
}

/** What metrics need to know of an item: its key and best candidate (and, if known, its groups). */
export interface ScoredItem {
  itemKey: string;
  best: number;
  category?: string;
  subset?: string;
}

/** How an unparseable view counts: `excluded` drops it (official VL-RewardBench script), `wrong` scores it 0 (VLMEvalKit). */
export type UnparseablePolicy = 'excluded' | 'wrong';

export const UNPARSEABLE_POLICIES: readonly UnparseablePolicy[] = ['excluded', 'wrong'];

/** The policy of the headline accuracy, as in the official VL-RewardBench script. */
export const HEADLINE_POLICY: UnparseablePolicy = 'excluded';

/** One metric value; maps 1:1 onto a row of the `metrics` table. */
export interface MetricRow {
  metric: string;
  /** 'overall' | 'macro' | 'category:<c>' | 'subset:<s>' */
  scope: string;
  /** The unparseable policy for accuracies, '' where it does not matter. */
  policy: UnparseablePolicy | '';
  value: number;
  ciLow?: number;
  ciHigh?: number;
  /** Number of units behind the value (items, item-views or samples, see README). */
  n: number;
}

export interface ComputeMetricsOptions {
  /** Seed of the bootstrap; the same seed gives the same intervals. */
  seed: number | string;
  /** Bootstrap resamples for the 95% percentile intervals; 0 disables them. Default 1,000. */
  bootstrap?: number;
}

/** The judgments refer to items, views or positions that do not exist: a bug upstream, not data. */
export class MetricsInputError extends Error {
  override readonly name = 'MetricsInputError';
}

interface ItemAgg {
  key: string;
  best: number;
  category: string;
  subset: string;
  /** view index → votes of the view's samples, in sample order. */
  views: Map<number, ViewAgg>;
  /** Samples of the item, and how many of them were unparseable / parseable (for the rates' CIs). */
  samples: number;
  unparseable: number;
  parseable: number;
  formatted: number;
}

interface ViewAgg {
  /** [sample, chosen candidate] of parseable samples. */
  votes: Array<[number, number]>;
  samples: Set<number>;
}

/** Per-item quantities every accuracy metric is built from. */
interface ItemScore {
  category: string;
  subset: string;
  /** Mean correctness over parseable views; NaN when no view is parseable (dropped under `excluded`). */
  excluded: number;
  /** Mean correctness over all views, unparseable views counting 0. */
  wrong: number;
  /** Majority candidate per view (null: unparseable). */
  majorities: Array<number | null>;
}

/**
 * Computes the evaluation metrics of a judge (definitions in activities/evaluate/README.md):
 * accuracy (overall, macro, per category, per subset; both unparseable policies; bootstrap CIs on
 * overall, macro and categories), position consistency, first-position rate, unparseable and
 * failure rates, mean output tokens and latency. Items without any judgment are left out (and
 * counted in `items_without_judgments`).
 */
export function computeMetrics(judgments: Iterable<JudgmentRecord>, items: Iterable<ScoredItem>, options: ComputeMetricsOptions): MetricRow[] {
  const bootstrap = options.bootstrap ?? 1000;
  if (!Number.isInteger(bootstrap) || bootstrap < 0) throw new RangeError(`computeMetrics: bootstrap must be a non-negative integer, got ${bootstrap}`);

  const known = new Map<string, ScoredItem>();
  for (const it of items) known.set(it.itemKey, it);

  const aggs = new Map<string, ItemAgg>();
  let samples = 0;
  let failedSamples = 0;
  let unparseableSamples = 0;
  let parseableSamples = 0;
  let formattedSamples = 0;
  let formatChecked = false;
  let firstPosition = 0;
  let tokenSum = 0;
  let tokenN = 0;
  let latencySum = 0;
  let latencyN = 0;

  for (const j of judgments) {
    const item = known.get(j.itemKey);
    if (!item) throw new MetricsInputError(`judgment for unknown item "${j.itemKey}"`);
    let agg = aggs.get(j.itemKey);
    if (!agg) {
      if (!Number.isInteger(item.best) || item.best < 0) throw new MetricsInputError(`item "${j.itemKey}" has best ${item.best}`);
      agg = {
        key: j.itemKey,
        best: item.best,
        category: item.category ?? j.category,
        subset: item.subset ?? j.subset,
        views: new Map(),
        samples: 0,
        unparseable: 0,
        parseable: 0,
        formatted: 0,
      };
      aggs.set(j.itemKey, agg);
    }
    let view = agg.views.get(j.view);
    if (!view) {
      view = { votes: [], samples: new Set() };
      agg.views.set(j.view, view);
    }
    if (view.samples.has(j.sample)) throw new MetricsInputError(`duplicate judgment: item "${j.itemKey}" view ${j.view} sample ${j.sample}`);
    view.samples.add(j.sample);
    if (item.best >= j.permutation.length) {
      throw new MetricsInputError(`item "${j.itemKey}": best ${item.best} but the view shows ${j.permutation.length} candidates`);
    }

    samples++;
    agg.samples++;
    if (j.formatted !== undefined) formatChecked = true;
    if (j.formatted === true && !j.failed) {
      formattedSamples++;
      agg.formatted++;
    }
    if (j.failed) {
      failedSamples++;
    } else {
      if (j.outputTokens !== undefined) {
        tokenSum += j.outputTokens;
        tokenN++;
      }
      if (j.latencyMs !== undefined) {
        latencySum += j.latencyMs;
        latencyN++;
      }
      if (j.chosenPosition === null) {
        unparseableSamples++;
        agg.unparseable++;
      } else {
        const candidate = j.permutation[j.chosenPosition];
        if (!Number.isInteger(j.chosenPosition) || candidate === undefined) {
          throw new MetricsInputError(`item "${j.itemKey}" view ${j.view} sample ${j.sample}: chosen position ${j.chosenPosition} out of range`);
        }
        parseableSamples++;
        agg.parseable++;
        if (j.chosenPosition === 0) firstPosition++;
        view.votes.push([j.sample, candidate]);
      }
    }
  }

  const scores: ItemScore[] = [];
  let views = 0;
  let unparseableViews = 0;
  let consistent = 0;
  let consistencyN = 0;
  const consistencyByCat = new Map<string, [number, number]>();
  for (const agg of aggs.values()) {
    const viewKeys = [...agg.views.keys()].sort((a, b) => a - b);
    const majorities = viewKeys.map((v) => majority(agg.views.get(v)!.votes));
    let correct = 0;
    let parseable = 0;
    for (const m of majorities) {
      views++;
      if (m === null) {
        unparseableViews++;
        continue;
      }
      parseable++;
      if (m === agg.best) correct++;
    }
    scores.push({
      category: agg.category,
      subset: agg.subset,
      excluded: parseable > 0 ? correct / parseable : Number.NaN,
      wrong: correct / majorities.length,
      majorities,
    });
    if (majorities.length >= 2 && parseable === majorities.length) {
      const same = majorities.every((m) => m === majorities[0]) ? 1 : 0;
      consistent += same;
      consistencyN++;
      const c = consistencyByCat.get(agg.category) ?? [0, 0];
      c[0] += same;
      c[1]++;
      consistencyByCat.set(agg.category, c);
    }
  }

  const rows: MetricRow[] = [];
  const categories = [...new Set(scores.map((s) => s.category))].sort();
  const subsets = [...new Set(scores.map((s) => s.subset))].sort();

  // Bootstrap draws are shared by both policies so their intervals are comparable.
  const boot = bootstrap > 0 ? bootstrapAccuracies(scores, categories, bootstrap, options.seed) : undefined;

  for (const policy of UNPARSEABLE_POLICIES) {
    const overall = meanScore(scores, policy);
    if (overall.n > 0) rows.push(withCi({ metric: 'accuracy', scope: 'overall', policy, value: overall.value, n: overall.n }, boot?.overall[policy]));
    const catAcc = categories.map((c) =>
      meanScore(
        scores.filter((s) => s.category === c),
        policy,
      ),
    );
    const present = catAcc.filter((a) => a.n > 0);
    if (present.length > 0) {
      const macro = present.reduce((sum, a) => sum + a.value, 0) / present.length;
      const n = present.reduce((sum, a) => sum + a.n, 0);
      rows.push(withCi({ metric: 'accuracy', scope: 'macro', policy, value: macro, n }, boot?.macro[policy]));
    }
    categories.forEach((c, i) => {
      const a = catAcc[i]!;
      if (a.n > 0) rows.push(withCi({ metric: 'accuracy', scope: `category:${c}`, policy, value: a.value, n: a.n }, boot?.category[policy][i]));
    });
    for (const s of subsets) {
      const a = meanScore(
        scores.filter((x) => x.subset === s),
        policy,
      );
      if (a.n > 0) rows.push({ metric: 'accuracy', scope: `subset:${s}`, policy, value: a.value, n: a.n });
    }
  }
  for (const scope of ['overall', 'macro'] as const) {
    const r = rows.find((x) => x.metric === 'accuracy' && x.scope === scope && x.policy === HEADLINE_POLICY);
    if (r) rows.push({ ...r, metric: 'headline_accuracy' });
  }

  if (consistencyN > 0) {
    rows.push({ metric: 'position_consistency', scope: 'overall', policy: '', value: consistent / consistencyN, n: consistencyN });
    for (const c of categories) {
      const v = consistencyByCat.get(c);
      if (v) rows.push({ metric: 'position_consistency', scope: `category:${c}`, policy: '', value: v[0] / v[1], n: v[1] });
    }
  }
  if (parseableSamples > 0)
    rows.push({ metric: 'first_position_rate', scope: 'overall', policy: '', value: firstPosition / parseableSamples, n: parseableSamples });
  if (samples > 0) {
    const rateCis = bootstrap > 0 ? bootstrapSampleRates([...aggs.values()], bootstrap, options.seed) : undefined;
    rows.push(withCi({ metric: 'unparseable_rate', scope: 'overall', policy: '', value: unparseableSamples / samples, n: samples }, rateCis?.unparseable));
    rows.push(withCi({ metric: 'parseable_rate', scope: 'overall', policy: '', value: parseableSamples / samples, n: samples }, rateCis?.parseable));
    if (formatChecked) {
      rows.push(withCi({ metric: 'format_rate', scope: 'overall', policy: '', value: formattedSamples / samples, n: samples }, rateCis?.formatted));
    }
    rows.push({ metric: 'failed_rate', scope: 'overall', policy: '', value: failedSamples / samples, n: samples });
  }
  if (views > 0) rows.push({ metric: 'unparseable_view_rate', scope: 'overall', policy: '', value: unparseableViews / views, n: views });
  if (tokenN > 0) rows.push({ metric: 'mean_output_tokens', scope: 'overall', policy: '', value: tokenSum / tokenN, n: tokenN });
  if (latencyN > 0) rows.push({ metric: 'mean_latency_ms', scope: 'overall', policy: '', value: latencySum / latencyN, n: latencyN });
  rows.push({ metric: 'items_judged', scope: 'overall', policy: '', value: aggs.size, n: aggs.size });
  rows.push({ metric: 'items_without_judgments', scope: 'overall', policy: '', value: known.size - aggs.size, n: known.size });
  return rows;
}

/**
 * Majority over the votes of one view. A tie goes to the tied candidate voted for by the
 * lowest-numbered sample: sample order carries no information about which candidate is right,
 * whereas "smallest candidate index" would favour candidate 0 — the preferred one in 1,245 of
 * VL-RewardBench's 1,250 items.
 */
export function majority(votes: ReadonlyArray<readonly [sample: number, candidate: number]>): number | null {
  if (votes.length === 0) return null;
  const counts = new Map<number, number>();
  let top = 0;
  for (const [, c] of votes) {
    const n = (counts.get(c) ?? 0) + 1;
    counts.set(c, n);
    if (n > top) top = n;
  }
  let winner: number | null = null;
  let winnerSample = Number.POSITIVE_INFINITY;
  for (const [s, c] of votes) {
    if (counts.get(c) === top && s < winnerSample) {
      winner = c;
      winnerSample = s;
    }
  }
  return winner;
}

function meanScore(scores: readonly ItemScore[], policy: UnparseablePolicy): { value: number; n: number } {
  let sum = 0;
  let n = 0;
  for (const s of scores) {
    const v = s[policy];
    if (Number.isNaN(v)) continue;
    sum += v;
    n++;
  }
  return { value: n > 0 ? sum / n : Number.NaN, n };
}

function withCi(row: MetricRow, ci: [number, number] | undefined): MetricRow {
  return ci ? { ...row, ciLow: ci[0], ciHigh: ci[1] } : row;
}

type Ci = [number, number] | undefined;

interface BootstrapCis {
  overall: Record<UnparseablePolicy, Ci>;
  macro: Record<UnparseablePolicy, Ci>;
  category: Record<UnparseablePolicy, Ci[]>;
}

/**
 * Percentile bootstrap (2.5% / 97.5%, linearly interpolated). Overall: resample all judged items
 * with replacement. Macro and per-category: resample items within each category (stratified),
 * then macro = mean of the resampled category accuracies. An item dropped under `excluded` is
 * drawn like any other and contributes nothing, so the intervals reflect the varying denominator.
 */
function bootstrapAccuracies(scores: readonly ItemScore[], categories: readonly string[], resamples: number, seed: number | string): BootstrapCis {
  const n = scores.length;
  const ex = Float64Array.from(scores, (s) => (Number.isNaN(s.excluded) ? 0 : s.excluded));
  const exIn = Uint8Array.from(scores, (s) => (Number.isNaN(s.excluded) ? 0 : 1));
  const wr = Float64Array.from(scores, (s) => s.wrong);
  const catIndex = new Map(categories.map((c, i) => [c, i]));
  const lists: number[][] = categories.map(() => []);
  scores.forEach((s, i) => lists[catIndex.get(s.category)!]!.push(i));
  const members = lists.map((l) => Int32Array.from(l));
  // One resample's draws (the streams' order is that of nextInt calls one by one).
  const draws = new Int32Array(Math.max(n, 1));

  const overallEx: number[] = [];
  const overallWr: number[] = [];
  const macroEx: number[] = [];
  const macroWr: number[] = [];
  const catEx: number[][] = categories.map(() => []);
  const catWr: number[][] = categories.map(() => []);

  const rngOverall = createRng('judgeflow/bootstrap/overall', seed);
  const rngStrata = createRng('judgeflow/bootstrap/strata', seed);
  for (let b = 0; b < resamples; b++) {
    let sEx = 0;
    let nEx = 0;
    let sWr = 0;
    rngOverall.fillInt(n, draws, n);
    for (let i = 0; i < n; i++) {
      const d = draws[i]!;
      sEx += ex[d]!;
      nEx += exIn[d]!;
      sWr += wr[d]!;
    }
    if (nEx > 0) overallEx.push(sEx / nEx);
    if (n > 0) overallWr.push(sWr / n);

    let mEx = 0;
    let mExN = 0;
    let mWr = 0;
    let mWrN = 0;
    for (let c = 0; c < members.length; c++) {
      const idx = members[c]!;
      const m = idx.length;
      let cEx = 0;
      let cExN = 0;
      let cWr = 0;
      rngStrata.fillInt(m, draws, m);
      for (let i = 0; i < m; i++) {
        const d = idx[draws[i]!]!;
        cEx += ex[d]!;
        cExN += exIn[d]!;
        cWr += wr[d]!;
      }
      if (cExN > 0) {
        const a = cEx / cExN;
        catEx[c]!.push(a);
        mEx += a;
        mExN++;
      }
      if (m > 0) {
        const a = cWr / m;
        catWr[c]!.push(a);
        mWr += a;
        mWrN++;
      }
    }
    if (mExN > 0) macroEx.push(mEx / mExN);
    if (mWrN > 0) macroWr.push(mWr / mWrN);
  }

  return {
    overall: { excluded: percentileCi(overallEx), wrong: percentileCi(overallWr) },
    macro: { excluded: percentileCi(macroEx), wrong: percentileCi(macroWr) },
    category: { excluded: catEx.map(percentileCi), wrong: catWr.map(percentileCi) },
  };
}

/**
 * 95% percentile bootstrap of the unparseable, parseable and (with an answer format) formatted sample rates, resampling items (an
 * item's samples and views are not independent of each other): rate = Σ counts / Σ samples over
 * the drawn items. Its own random stream, so adding it left the accuracy intervals unchanged.
 */
function bootstrapSampleRates(aggs: readonly ItemAgg[], resamples: number, seed: number | string): { unparseable: Ci; parseable: Ci; formatted: Ci } {
  const n = aggs.length;
  const s = Float64Array.from(aggs, (a) => a.samples);
  const u = Float64Array.from(aggs, (a) => a.unparseable);
  const p = Float64Array.from(aggs, (a) => a.parseable);
  const f = Float64Array.from(aggs, (a) => a.formatted);
  const rng = createRng('judgeflow/bootstrap/sample-rates', seed);
  const unparseable: number[] = [];
  const parseable: number[] = [];
  const formatted: number[] = [];
  const draws = new Int32Array(Math.max(n, 1));
  for (let b = 0; b < resamples; b++) {
    let sS = 0;
    let sU = 0;
    let sP = 0;
    let sF = 0;
    rng.fillInt(n, draws, n);
    for (let i = 0; i < n; i++) {
      const d = draws[i]!;
      sS += s[d]!;
      sU += u[d]!;
      sP += p[d]!;
      sF += f[d]!;
    }
    if (sS > 0) {
      unparseable.push(sU / sS);
      parseable.push(sP / sS);
      formatted.push(sF / sS);
    }
  }
  return { unparseable: percentileCi(unparseable), parseable: percentileCi(parseable), formatted: percentileCi(formatted) };
}

function percentileCi(values: number[]): Ci {
  if (values.length === 0) return undefined;
  const sorted = Float64Array.from(values).sort();
  return [quantile(sorted, 0.025), quantile(sorted, 0.975)];
}

/** Linear interpolation between order statistics (R type 7, numpy's default). */
function quantile(sorted: Float64Array, q: number): number {
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}
