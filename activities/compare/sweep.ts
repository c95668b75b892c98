/**
 * Compares sweep stages: their curves side by side (score vs N per strategy, with the stored 95%
 * CIs and costs), and per side against its baseline, at every (strategy, N) both have, the paired
 * bootstrap of the score difference on the questions both scored. Refuses different question sets
 * (content hashes) or graders.
 */
import type { Db } from '../../db/client.js';
import { loadCurvePoints, loadItemKeys, loadSweepSelections, type CurvePointRow, type StageSide } from '../../db/compare.js';
import { canonicalJson } from '../../spec/canonical.js';
import { graderOf, nMaxOf, strategiesOf, type SweepParams } from '../../spec/kinds/sweep.js';
import { baselinePairs, CompareRefusedError, labelOf, sidesOnOneSource } from './comparison.js';
import { pairedBootstrap } from './stats.js';

export interface SweepSideSummary {
  label: string;
  runId: string;
  stageId: string;
  axes: Record<string, unknown> | null;
  reusedFrom?: string;
  dataset: { artifactId: number; name: string | null; hash: string };
  grader: string;
  questions: number;
  strategies: string[];
  n: number[];
  /** The curve's `total` points (score ×100 with its 95% CI, cost of one best-of-N run over the questions). */
  points: CurvePointRow[];
}

export interface SweepPair {
  a: string;
  b: string;
  strategy: string;
  n: number;
  /** Questions scored on both sides at this (strategy, N). */
  shared: number;
  /** Mean score ×100 over the shared questions. */
  valueA: number;
  valueB: number;
  delta: number;
  /** 95% paired bootstrap interval of B − A (points). */
  ci: [number, number];
  pBootstrap: number;
  /** USD of one best-of-N run over all of each side's questions (the curve's cost). */
  costA: number | null;
  costB: number | null;
}

export interface SweepComparison {
  kind: 'sweep';
  seed: number;
  resamples: number;
  by?: string;
  sides: SweepSideSummary[];
  pairs: SweepPair[];
}

/**
 * Per question, per `${strategy}|${n}`: the score ×100 of the selected answers, averaged over the
 * replicates the stage's spec has (as the curve averages them).
 */
export async function sweepItemScores(db: Db, side: StageSide): Promise<Map<string, Map<string, number>>> {
  const params = side.params as SweepParams;
  const nMax = nMaxOf(params);
  const ns = new Set(params.n);
  const questions = new Set(await loadItemKeys(db, 'qa_items', Number(side.ref.sourceArtifactId), Number(side.ref.questions)));
  const sums = new Map<string, Map<string, { s: number; c: number }>>();
  for (const sel of await loadSweepSelections(db, side.origin.runId, side.origin.stageId)) {
    // As the curve: only the N of the spec, its replicates, its questions.
    if (!ns.has(sel.n) || !questions.has(sel.itemKey) || sel.replicate > (sel.n === nMax ? 0 : params.resamples)) continue;
    const key = `${sel.strategy}|${sel.n}`;
    const per = sums.get(key) ?? sums.set(key, new Map()).get(key)!;
    const acc = per.get(sel.itemKey) ?? per.set(sel.itemKey, { s: 0, c: 0 }).get(sel.itemKey)!;
    acc.s += sel.grade;
    acc.c++;
  }
  return new Map([...sums].map(([k, per]) => [k, new Map([...per].map(([q, v]) => [q, (100 * v.s) / v.c]))]));
}

/** The strategies of a curve's points, in the order the stage's spec lists them. */
export function strategyOrder(params: SweepParams, points: readonly { strategy: string }[]): string[] {
  const present = new Set(points.map((p) => p.strategy));
  return [...strategiesOf(params).map((s) => s.name), ...present].filter((n, i, all) => present.has(n) && all.indexOf(n) === i);
}

export async function buildSweepComparison(db: Db, input: StageSide[], opts: { by?: string; resamples?: number } = {}): Promise<SweepComparison> {
  const resamples = opts.resamples ?? 1000;
  const { sides, sources } = await sidesOnOneSource(db, input, 'sweep', {
    ready: (s) => s.ref.artifactId !== undefined,
    result: 'curve',
    differ: 'different question sets',
    verb: 'swept',
    fix: 'compare sweeps over the same dataset version',
  });
  const first = sides[0]!;
  const graderKey = (s: StageSide) => canonicalJson(graderOf(s.params as SweepParams));
  for (const s of sides.slice(1)) {
    if (graderKey(s) !== graderKey(first))
      throw new CompareRefusedError(
        `different graders: ${first.runId}/${first.stageId} scores answers by ${graderKey(first)}, ${s.runId}/${s.stageId} by ${graderKey(s)}; set the same grader`,
      );
  }

  const labels = sides.map((s) => labelOf(s, sides));
  const summaries: SweepSideSummary[] = [];
  for (const [i, s] of sides.entries()) {
    const params = s.params as SweepParams;
    const points = (await loadCurvePoints(db, Number(s.ref.artifactId))).filter((p) => p.capability === 'total');
    // In the spec's order, as `judgeflow results` lists them.
    const strategies = strategyOrder(params, points);
    summaries.push({
      label: labels[i]!,
      runId: s.runId,
      stageId: s.stageId,
      axes: s.axes,
      reusedFrom: s.origin.runId !== s.runId || s.origin.stageId !== s.stageId ? `${s.origin.runId}/${s.origin.stageId}` : undefined,
      dataset: { artifactId: sources[i]!.id, name: sources[i]!.name, hash: sources[i]!.hash ?? '' },
      grader: graderKey(s),
      questions: Number(s.ref.questions),
      strategies,
      n: [...params.n].sort((x, y) => x - y),
      points,
    });
  }

  const scores = new Map<StageSide, Map<string, Map<string, number>>>();
  for (const s of sides) scores.set(s, await sweepItemScores(db, s));
  const seed = first.seed;
  const pairs: SweepPair[] = [];
  for (const [i, j] of baselinePairs(sides, opts.by)) {
    const [sa, sb] = [summaries[i]!, summaries[j]!];
    const [va, vb] = [scores.get(sides[i]!)!, scores.get(sides[j]!)!];
    for (const strategy of sa.strategies.filter((st) => sb.strategies.includes(st))) {
      for (const n of sa.n.filter((x) => sb.n.includes(x))) {
        const key = `${strategy}|${n}`;
        const qa = va.get(key);
        const qb = vb.get(key);
        if (!qa || !qb) continue;
        // Shared questions in sorted key order: the bootstrap draws are reproducible.
        const keys = [...qa.keys()].filter((q) => qb.has(q)).sort();
        const xa = keys.map((q) => qa.get(q)!);
        const xb = keys.map((q) => qb.get(q)!);
        const mean = (x: number[]) => (x.length ? x.reduce((s, v) => s + v, 0) / x.length : Number.NaN);
        const boot = pairedBootstrap(xa, xb, resamples, seed);
        const cost = (s: SweepSideSummary) => s.points.find((p) => p.strategy === strategy && p.n === n)?.costUsd ?? null;
        pairs.push({
          a: sa.label,
          b: sb.label,
          strategy,
          n,
          shared: keys.length,
          valueA: mean(xa),
          valueB: mean(xb),
          delta: boot.delta,
          ci: boot.ci,
          pBootstrap: boot.p,
          costA: cost(sa),
          costB: cost(sb),
        });
      }
    }
  }
  return { kind: 'sweep', seed, resamples, by: opts.by, sides: summaries, pairs };
}
