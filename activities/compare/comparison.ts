/**
 * Builds a comparison of evaluate stages: their metrics side by side, and per side against its
 * baseline the paired statistics on the items both judged. Refuses (CompareRefusedError, exit 2)
 * numbers that do not compare: different datasets or versions, scoring policies or category mappings.
 */
import type { Db } from '../../db/client.js';
import { loadArtifactInfo, loadItems, loadJudgments, type StageSide } from '../../db/compare.js';
import { sha256Hex } from '../../spec/canonical.js';
import { itemValues, pairedAccuracy, pairedMean, type ItemValues, type PairedAccuracy, type Policy } from './stats.js';

/** Sides that must not be compared; the message says why. */
export class CompareRefusedError extends Error {
  override readonly name = 'CompareRefusedError';
}

export const COMPARE_METRICS = ['accuracy', 'output_tokens'] as const;
export type CompareMetric = (typeof COMPARE_METRICS)[number];

export interface SideSummary {
  label: string;
  runId: string;
  stageId: string;
  axes: Record<string, unknown> | null;
  reusedFrom?: string;
  dataset: { artifactId: number; name: string | null; hash: string };
  policy: Policy;
  accuracy: { value: number; ciLow: number | null; ciHigh: number | null; n: number } | null;
  macro: { value: number; ciLow: number | null; ciHigh: number | null } | null;
  categories: Record<string, { value: number; ciLow: number | null; ciHigh: number | null; n: number }>;
  firstPositionRate: number | null;
  positionConsistency: number | null;
  unparseableRate: number | null;
  meanOutputTokens: number | null;
  requests: number | null;
  requestsCached: number | null;
  costUsd: number | null;
}

export interface PairResult {
  /** Labels of the baseline (A) and the side compared with it (B). */
  a: string;
  b: string;
  metric: CompareMetric;
  shared: number;
  valueA: number;
  valueB: number;
  delta: number;
  ci: [number, number];
  pBootstrap: number;
  mcnemar?: PairedAccuracy['mcnemar'];
}

export interface Comparison {
  kind: 'evaluate';
  metric: CompareMetric;
  policy: Policy;
  seed: number;
  resamples: number;
  by?: string;
  sides: SideSummary[];
  pairs: PairResult[];
}

const short = (h: string | null) => (h ? h.slice(0, 12) : '?');

export function labelOf(s: StageSide, all: StageSide[]): string {
  const manyStages = new Set(all.filter((x) => x.runId === s.runId).map((x) => x.stageId)).size > 1 || new Set(all.map((x) => x.stageId)).size > 1;
  if (s.axes && all.every((x) => x.groupId && x.groupId === s.groupId)) {
    const axes = Object.entries(s.axes)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(' ');
    return manyStages ? `${axes} ${s.stageId}` : axes;
  }
  return `${s.runId}/${s.stageId}`;
}

/**
 * Compares evaluate stages. Baselines: without `by`, the first side for every other; with `by`
 * (an axis of a group), each side against the side with the same other axis values, the same stage,
 * and the axis's first value.
 */
export async function buildComparison(db: Db, input: StageSide[], opts: { metric?: CompareMetric; by?: string; resamples?: number } = {}): Promise<Comparison> {
  const metric = opts.metric ?? 'accuracy';
  const resamples = opts.resamples ?? 1000;
  const sides = input.filter((s) => s.kind === 'evaluate');
  if (sides.length < 2)
    throw new CompareRefusedError(
      `need at least two evaluate stages to compare, got ${sides.length}${input.length > sides.length ? ` (${input.length - sides.length} stage(s) of other kinds left out)` : ''}`,
    );
  const notDone = sides.filter((s) => s.status !== 'succeeded' || s.datasetId === null);
  if (notDone.length > 0)
    throw new CompareRefusedError(`${notDone.map((s) => `${s.runId}/${s.stageId} (${s.status})`).join(', ')} has no results yet: compare succeeded stages`);

  // Numbers only compare on the same items, scored the same way.
  const first = sides[0]!;
  for (const s of sides.slice(1)) {
    if (s.datasetHash !== first.datasetHash) {
      throw new CompareRefusedError(
        `different datasets: ${first.runId}/${first.stageId} evaluates artifact ${first.datasetId} "${first.datasetName}" (content ${short(first.datasetHash)}), ${s.runId}/${s.stageId} evaluates artifact ${s.datasetId} "${s.datasetName}" (content ${short(s.datasetHash)}); compare stages that judged the same dataset version`,
      );
    }
  }
  const policyOf = (s: StageSide) => (s.params.headline_policy as Policy | undefined) ?? 'excluded';
  for (const s of sides.slice(1)) {
    if (policyOf(s) !== policyOf(first)) {
      throw new CompareRefusedError(
        `different scoring policies: ${first.runId}/${first.stageId} scores unparseable outputs "${policyOf(first)}", ${s.runId}/${s.stageId} "${policyOf(s)}"; set the same headline_policy`,
      );
    }
  }
  const items = new Map<number, Map<string, { best: number; category: string }>>();
  for (const s of sides) if (!items.has(s.datasetId!)) items.set(s.datasetId!, await loadItems(db, s.datasetId!));
  const mappingHash = (m: Map<string, { category: string }>) =>
    sha256Hex(
      [...m]
        .map(([k, v]) => `${k}\t${v.category}`)
        .sort()
        .join('\n'),
    );
  const firstMapping = mappingHash(items.get(first.datasetId!)!);
  for (const s of sides.slice(1)) {
    if (mappingHash(items.get(s.datasetId!)!) !== firstMapping) {
      throw new CompareRefusedError(
        `different category mappings: the items of ${first.runId}/${first.stageId} and ${s.runId}/${s.stageId} are filed under different categories; re-import both with the same loader version`,
      );
    }
  }
  const policy = policyOf(first);

  const labels = sides.map((s) => labelOf(s, sides));
  const values = new Map<StageSide, Map<string, ItemValues>>();
  for (const s of sides) {
    const its = items.get(s.datasetId!)!;
    const best = new Map([...its].map(([k, v]) => [k, v.best]));
    values.set(s, itemValues(await loadJudgments(db, s.origin.runId, s.origin.stageId), best, policy));
  }

  const pairsOf = baselinePairs(sides, opts.by);
  const seed = first.seed;
  const pairs: PairResult[] = pairsOf.map(([i, j]) => {
    const va = values.get(sides[i]!)!;
    const vb = values.get(sides[j]!)!;
    const common = (r: { shared: number; a: number; b: number; bootstrap: { delta: number; ci: [number, number]; p: number } }) => ({
      a: labels[i]!,
      b: labels[j]!,
      metric,
      shared: r.shared,
      valueA: r.a,
      valueB: r.b,
      delta: r.bootstrap.delta,
      ci: r.bootstrap.ci,
      pBootstrap: r.bootstrap.p,
    });
    if (metric === 'accuracy') {
      const r = pairedAccuracy(va, vb, { resamples, seed });
      return { ...common(r), mcnemar: r.mcnemar };
    }
    return common(pairedMean(va, vb, 'outputTokens', { resamples, seed }));
  });

  return { kind: 'evaluate', metric, policy, seed, resamples, by: opts.by, sides: sides.map((s, i) => summarize(s, labels[i]!, policy)), pairs };
}

/**
 * Which sides are compared with which, as index pairs [baseline, other]: without `by`, the first
 * side against every other; with `by` (an axis of a group), each side against the side with the
 * same other axis values, the same stage, and the axis's first value.
 */
export function baselinePairs(sides: StageSide[], by: string | undefined): [number, number][] {
  const pairsOf: [number, number][] = [];
  if (by) {
    if (!sides.every((s) => s.axes && by in s.axes))
      throw new CompareRefusedError(
        `--by ${by}: not an axis of every run compared; axes: ${[...new Set(sides.flatMap((s) => Object.keys(s.axes ?? {})))].join(', ') || '(none: not a group)'}`,
      );
    const baseValue = sides[0]!.axes![by];
    const rest = (s: StageSide) =>
      JSON.stringify(
        Object.entries(s.axes!)
          .filter(([k]) => k !== by)
          .sort(),
      ) + s.stageId;
    sides.forEach((s, i) => {
      if (s.axes![by] === baseValue) return;
      const j = sides.findIndex((o) => o.axes![by] === baseValue && rest(o) === rest(s));
      if (j >= 0) pairsOf.push([j, i]);
    });
  } else {
    for (let i = 1; i < sides.length; i++) pairsOf.push([0, i]);
  }
  return pairsOf;
}

/** One stage's headline numbers (metrics rows) as compare, the report and the dashboard show them. */
export function summarize(s: StageSide, label: string, policy: Policy): SideSummary {
  const get = (metric: string, scope = 'overall', pol = '') => s.metrics.find((m) => m.metric === metric && m.scope === scope && m.policy === pol);
  const acc = get('accuracy', 'overall', policy);
  const macro = get('accuracy', 'macro', policy);
  const categories: SideSummary['categories'] = {};
  for (const m of s.metrics)
    if (m.metric === 'accuracy' && m.policy === policy && m.scope.startsWith('category:'))
      categories[m.scope.slice(9)] = { value: m.value, ciLow: m.ciLow, ciHigh: m.ciHigh, n: m.n };
  return {
    label,
    runId: s.runId,
    stageId: s.stageId,
    axes: s.axes,
    reusedFrom: s.origin.runId !== s.runId || s.origin.stageId !== s.stageId ? `${s.origin.runId}/${s.origin.stageId}` : undefined,
    dataset: { artifactId: s.datasetId!, name: s.datasetName, hash: s.datasetHash ?? '' },
    policy,
    accuracy: acc ? { value: acc.value, ciLow: acc.ciLow, ciHigh: acc.ciHigh, n: acc.n } : null,
    macro: macro ? { value: macro.value, ciLow: macro.ciLow, ciHigh: macro.ciHigh } : null,
    categories,
    firstPositionRate: get('first_position_rate')?.value ?? null,
    positionConsistency: get('position_consistency')?.value ?? null,
    unparseableRate: get('unparseable_rate')?.value ?? null,
    meanOutputTokens: get('mean_output_tokens')?.value ?? null,
    requests: get('requests')?.value ?? null,
    requestsCached: get('requests_cached')?.value ?? null,
    costUsd: get('cost_usd')?.value ?? null,
  };
}

/**
 * The `kind` stages of `input`, refused unless there are two or more, all succeeded (`ready`) and
 * all read the same source artifact (by content hash); with the source artifacts, in side order.
 * `words` fills the refusals: what a stage has once done, what the sides read, how a stage read
 * it (`<verb> artifact N`) and what to compare instead.
 */
export async function sidesOnOneSource(
  db: Db,
  input: StageSide[],
  kind: string,
  words: { ready: (s: StageSide) => boolean; result: string; differ: string; verb: string; fix: string },
): Promise<{ sides: StageSide[]; sources: NonNullable<Awaited<ReturnType<typeof loadArtifactInfo>>>[] }> {
  const sides = input.filter((s) => s.kind === kind);
  if (sides.length < 2) throw new CompareRefusedError(`need at least two ${kind} stages to compare, got ${sides.length}`);
  const notDone = sides.filter((s) => s.status !== 'succeeded' || !words.ready(s));
  if (notDone.length > 0)
    throw new CompareRefusedError(
      `${notDone.map((s) => `${s.runId}/${s.stageId} (${s.status})`).join(', ')} has no ${words.result} yet: compare succeeded stages`,
    );
  const sources = await Promise.all(
    sides.map(async (s) => {
      const info = await loadArtifactInfo(db, Number(s.ref.sourceArtifactId));
      if (!info) throw new Error(`${kind} stage ${s.runId}/${s.stageId}: source artifact ${String(s.ref.sourceArtifactId)} is gone`);
      return info;
    }),
  );
  const first = sides[0]!;
  sides.forEach((s, i) => {
    if (i === 0 || sources[i]!.hash === sources[0]!.hash) return;
    throw new CompareRefusedError(
      `${words.differ}: ${first.runId}/${first.stageId} ${words.verb} artifact ${sources[0]!.id} "${sources[0]!.name}" (content ${short(sources[0]!.hash)}), ${s.runId}/${s.stageId} ${words.verb} artifact ${sources[i]!.id} "${sources[i]!.name}" (content ${short(sources[i]!.hash)}); ${words.fix}`,
    );
  });
  return { sides, sources };
}
