/**
 * Compares distill stages on the same source items: acceptance rates side by side with 95% Wilson
 * intervals, and per side against its baseline
 *   - per item (paired on the items both read): accepted at all, accepted at the first attempt,
 *     and accepted per error type of the item's negatives: exact McNemar and a paired bootstrap CI;
 *   - per trace (the sides tried different numbers of traces, so unpaired): traces accepted and
 *     rejected per reason: a two-proportion z-test and a Wald CI of the difference.
 * Refuses stages that read different source items (content hashes).
 */
import type { Db } from '../../db/client.js';
import { loadArtifactInfo, loadDistillAttempts, loadItemKeys, type StageSide } from '../../db/compare.js';
import { baselinePairs, labelOf, sidesOnOneSource } from './comparison.js';
import { pairedValues, twoProportion, wilson, type Proportion } from './stats.js';

export interface DistillSideSummary {
  label: string;
  runId: string;
  stageId: string;
  axes: Record<string, unknown> | null;
  reusedFrom?: string;
  dataset: { artifactId: number; name: string | null; hash: string };
  hint: boolean;
  maxAttempts: number;
  /** Source items with an accepted trace (of the items read). */
  accepted: Proportion;
  /** Source items accepted at their first attempt. */
  firstAttempt: Proportion;
  /** Per error type of the items' negatives: items of that type accepted. */
  errorTypes: Record<string, Proportion>;
  /** Traces (attempts) accepted, of those tried. */
  traces: Proportion;
  /** Per rejection reason: traces rejected for it, of those tried. */
  rejections: Record<string, Proportion>;
}

export interface DistillPair {
  a: string;
  b: string;
  /** `items accepted`, `accepted at attempt 1`, `error type: <t>`, `traces accepted`, `rejected: <reason>`. */
  measure: string;
  test: 'paired' | 'two-proportion';
  /** Items both sides read (paired measures); null for trace measures. */
  shared: number | null;
  nA: number;
  nB: number;
  valueA: number;
  valueB: number;
  delta: number;
  /** 95% CI of B − A: paired bootstrap (paired) or Wald (two-proportion). */
  ci: [number, number];
  /** Exact McNemar (paired) or the pooled two-proportion z-test. */
  p: number;
  mcnemar?: { items: number; b: number; c: number };
}

export interface DistillComparison {
  kind: 'distill';
  seed: number;
  resamples: number;
  by?: string;
  sides: DistillSideSummary[];
  pairs: DistillPair[];
}

/** Per item of a distill stage (the items it read): accepted at all, at the first attempt, its error types; and its traces. */
export async function distillOutcomes(
  db: Db,
  side: StageSide,
): Promise<{
  accepted: Map<string, number>;
  first: Map<string, number>;
  types: Map<string, string[]>;
  traces: { tried: number; accepted: number; rejected: Record<string, number> };
}> {
  const keys = await loadItemKeys(db, 'mc_items', Number(side.ref.sourceArtifactId), Number(side.ref.items));
  const wanted = new Set(keys);
  const accepted = new Map(keys.map((k) => [k, 0]));
  const first = new Map(keys.map((k) => [k, 0]));
  const types = new Map<string, string[]>();
  const traces = { tried: 0, accepted: 0, rejected: {} as Record<string, number> };
  for (const a of await loadDistillAttempts(db, side.origin.runId, side.origin.stageId)) {
    if (!wanted.has(a.itemKey)) continue;
    traces.tried++;
    if (!types.has(a.itemKey)) types.set(a.itemKey, a.errorTypes);
    if (a.status === 'accepted') {
      traces.accepted++;
      accepted.set(a.itemKey, 1);
      if (a.attempt === 0) first.set(a.itemKey, 1);
    } else {
      traces.rejected[a.status] = (traces.rejected[a.status] ?? 0) + 1;
    }
  }
  return { accepted, first, types, traces };
}

type Outcomes = Awaited<ReturnType<typeof distillOutcomes>>;
const allTypes = (o: Outcomes) => [...new Set([...o.types.values()].flat())].sort();

/** One distill stage's acceptance rates (95% Wilson CIs) from its outcomes. */
export function summarizeDistill(s: StageSide, label: string, source: { id: number; name: string; hash: string | null }, o: Outcomes): DistillSideSummary {
  const errorTypes: Record<string, Proportion> = {};
  for (const t of allTypes(o)) {
    const of = restrict(o.accepted, (k) => o.types.get(k)?.includes(t) ?? false);
    errorTypes[t] = wilson(count(of), of.size);
  }
  return {
    label,
    runId: s.runId,
    stageId: s.stageId,
    axes: s.axes,
    reusedFrom: s.origin.runId !== s.runId || s.origin.stageId !== s.stageId ? `${s.origin.runId}/${s.origin.stageId}` : undefined,
    dataset: { artifactId: source.id, name: source.name, hash: source.hash ?? '' },
    hint: s.params.hint === true,
    maxAttempts: Number(s.params.max_attempts ?? 1),
    accepted: wilson(count(o.accepted), o.accepted.size),
    firstAttempt: wilson(count(o.first), o.first.size),
    errorTypes,
    traces: wilson(o.traces.accepted, o.traces.tried),
    rejections: Object.fromEntries(
      Object.keys(o.traces.rejected)
        .sort()
        .map((r) => [r, wilson(o.traces.rejected[r]!, o.traces.tried)]),
    ),
  };
}

/** A finished distill stage's summary on its own (the report and the dashboard). */
export async function loadDistillSummary(db: Db, s: StageSide, label: string): Promise<DistillSideSummary | undefined> {
  if (s.status !== 'succeeded' || s.ref.sourceArtifactId === undefined) return undefined;
  const source = await loadArtifactInfo(db, Number(s.ref.sourceArtifactId));
  return source ? summarizeDistill(s, label, source, await distillOutcomes(db, s)) : undefined;
}

const restrict = (m: Map<string, number>, keep: (k: string) => boolean) => new Map([...m].filter(([k]) => keep(k)));
const count = (m: Map<string, number>) => [...m.values()].reduce((s, v) => s + v, 0);

export async function buildDistillComparison(db: Db, input: StageSide[], opts: { by?: string; resamples?: number } = {}): Promise<DistillComparison> {
  const resamples = opts.resamples ?? 1000;
  const { sides, sources } = await sidesOnOneSource(db, input, 'distill', {
    ready: (s) => s.ref.sourceArtifactId !== undefined,
    result: 'results',
    differ: 'different source items',
    verb: 'distilled',
    fix: 'compare stages that read the same items',
  });
  const first = sides[0]!;

  const labels = sides.map((s) => labelOf(s, sides));
  const outcomes = await Promise.all(sides.map((s) => distillOutcomes(db, s)));
  const summaries = sides.map((s, i) => summarizeDistill(s, labels[i]!, sources[i]!, outcomes[i]!));

  const seed = first.seed;
  const pairs: DistillPair[] = [];
  for (const [i, j] of baselinePairs(sides, opts.by)) {
    const [oa, ob] = [outcomes[i]!, outcomes[j]!];
    const base = { a: labels[i]!, b: labels[j]! };
    const pairedRow = (measure: string, a: Map<string, number>, b: Map<string, number>) => {
      const r = pairedValues(a, b, { resamples, seed });
      pairs.push({
        ...base,
        measure,
        test: 'paired',
        shared: r.shared,
        nA: r.shared,
        nB: r.shared,
        valueA: r.a,
        valueB: r.b,
        delta: r.bootstrap.delta,
        ci: r.bootstrap.ci,
        p: r.mcnemar.p,
        mcnemar: { items: r.mcnemar.items, b: r.mcnemar.b, c: r.mcnemar.c },
      });
    };
    pairedRow('items accepted', oa.accepted, ob.accepted);
    pairedRow('accepted at attempt 1', oa.first, ob.first);
    for (const t of [...new Set([...allTypes(oa), ...allTypes(ob)])].sort()) {
      // An item's error types come from its source item, so both sides tag it alike.
      const has = (o: typeof oa) => (k: string) => o.types.get(k)?.includes(t) ?? false;
      pairedRow(`error type: ${t}`, restrict(oa.accepted, has(oa)), restrict(ob.accepted, has(ob)));
    }
    const unpaired = (measure: string, kA: number, kB: number) => {
      const [nA, nB] = [oa.traces.tried, ob.traces.tried];
      const r = twoProportion(kA, nA, kB, nB);
      pairs.push({ ...base, measure, test: 'two-proportion', shared: null, nA, nB, valueA: kA / nA, valueB: kB / nB, delta: r.delta, ci: r.ci, p: r.p });
    };
    unpaired('traces accepted', oa.traces.accepted, ob.traces.accepted);
    for (const reason of [...new Set([...Object.keys(oa.traces.rejected), ...Object.keys(ob.traces.rejected)])].sort())
      unpaired(`rejected: ${reason}`, oa.traces.rejected[reason] ?? 0, ob.traces.rejected[reason] ?? 0);
  }
  return { kind: 'distill', seed, resamples, by: opts.by, sides: summaries, pairs };
}
