/**
 * What a report or dashboard page shows of a set of stages, one builder per stage kind. A new
 * kind (sweep: scaling curves; distill: acceptance rates) plugs in by adding its builder to SECTIONS.
 */
import { buildComparison, CompareRefusedError, labelOf, summarize, type Comparison } from '../activities/compare/comparison.js';
import type { Policy } from '../activities/compare/stats.js';
import type { Db } from '../db/client.js';
import { runArtifacts } from '../db/artifacts.js';
import type { StageSide } from '../db/compare.js';
import { acceptanceChart, categoryAccuracyChart, pairsChart, positionBiasChart, tokensChart, type Chart } from './charts.js';

export interface Table {
  headers: string[];
  rows: (string | number)[][];
}

export interface Section {
  title: string;
  notes: string[];
  tables: Table[];
  charts: Chart[];
}

export type SectionBuilder = (db: Db, sides: StageSide[], all: StageSide[]) => Promise<Section[]>;

const pct = (v: number | null | undefined) => (v === null || v === undefined || Number.isNaN(v) ? '' : (v * 100).toFixed(1));
const withCi = (v: { value: number; ciLow: number | null; ciHigh: number | null } | null) =>
  v ? `${pct(v.value)}${v.ciLow !== null && v.ciHigh !== null ? ` [${pct(v.ciLow)}, ${pct(v.ciHigh)}]` : ''}` : '';

const evaluateSections: SectionBuilder = async (db, sides, all) => {
  const done = sides.filter((s) => s.status === 'succeeded');
  if (done.length === 0) return [];
  const policy = (done[0]!.params.headline_policy as Policy | undefined) ?? 'excluded';
  const summaries = done.map((s) =>
    summarize(
      s,
      labelOf(
        s,
        all.filter((x) => x.kind === 'evaluate'),
      ),
      policy,
    ),
  );
  const cats = [...new Set(summaries.flatMap((s) => Object.keys(s.categories)))].sort();
  const section: Section = {
    title: 'Judge evaluation',
    notes: [`Accuracy in %, 95% bootstrap CIs; unparseable outputs ${policy === 'excluded' ? 'excluded from' : 'counted wrong in'} the headline.`],
    tables: [
      {
        headers: ['stage', 'accuracy', 'macro', ...cats, 'first-pos %', 'consistency %', 'unparseable %', 'out tok', 'requests', 'cached', 'cost $'],
        rows: summaries.map((s) => [
          s.label + (s.reusedFrom ? ` (reused from ${s.reusedFrom})` : ''),
          withCi(s.accuracy),
          withCi(s.macro),
          ...cats.map((c) => withCi(s.categories[c] ?? null)),
          pct(s.firstPositionRate),
          pct(s.positionConsistency),
          pct(s.unparseableRate),
          s.meanOutputTokens === null ? '' : Math.round(s.meanOutputTokens),
          s.requests ?? '',
          s.requestsCached ?? '',
          s.costUsd === null ? '' : s.costUsd.toFixed(4),
        ]),
      },
    ],
    charts: [categoryAccuracyChart(summaries), positionBiasChart(summaries), tokensChart(summaries)].filter((c): c is Chart => c !== undefined),
  };
  const out = [section];
  if (done.length >= 2) {
    let cmp: Comparison | undefined;
    try {
      cmp = await buildComparison(db, done, { resamples: 1000 });
    } catch (err) {
      if (!(err instanceof CompareRefusedError)) throw err;
      section.notes.push(`Not compared pairwise: ${err.message}.`);
    }
    if (cmp) {
      out.push({
        title: 'Paired comparison on shared items',
        notes: [
          `B − A against ${cmp.pairs[0]?.a ?? 'the first stage'}; paired bootstrap (${cmp.resamples} resamples, seed ${cmp.seed}); exact McNemar on items scored 0/1 on both sides.`,
        ],
        tables: [
          {
            headers: ['A', 'B', 'shared items', 'A %', 'B %', 'B − A', '95% CI', 'p (bootstrap)', 'McNemar b/c', 'p (McNemar)'],
            rows: cmp.pairs.map((p) => [
              p.a,
              p.b,
              p.shared,
              pct(p.valueA),
              pct(p.valueB),
              pct(p.delta),
              `[${pct(p.ci[0])}, ${pct(p.ci[1])}]`,
              p.pBootstrap.toPrecision(3),
              p.mcnemar ? `${p.mcnemar.b}/${p.mcnemar.c}` : '',
              p.mcnemar ? p.mcnemar.p.toPrecision(3) : '',
            ]),
          },
        ],
        charts: [pairsChart(cmp.pairs)].filter((c): c is Chart => c !== undefined),
      });
    }
  }
  return out;
};

interface ErrorTypeStats {
  requested: number;
  written: number;
  kept: number;
  filtered: Record<string, number>;
  request_failed: number;
}

const synthesizeSections: SectionBuilder = async (db, sides) => {
  const rows: { side: string; errorType: string; requested: number; kept: number }[] = [];
  const table: Table = { headers: ['stage', 'error type', 'requested', 'written', 'failed', 'filtered', 'kept', 'kept %'], rows: [] };
  for (const s of sides.filter((x) => x.status === 'succeeded')) {
    const arts = (await runArtifacts(db, s.origin.runId)).filter((a) => a.stageId === s.origin.stageId);
    for (const a of arts) {
      const types = (a.summary as { error_types?: Record<string, ErrorTypeStats> }).error_types ?? {};
      for (const [name, t] of Object.entries(types)) {
        const label = `${s.runId}/${s.stageId}`;
        rows.push({ side: label, errorType: name, requested: t.requested, kept: t.kept });
        const filtered = Object.values(t.filtered).reduce((x, y) => x + y, 0);
        table.rows.push([
          label,
          name,
          t.requested,
          t.written,
          t.request_failed,
          filtered,
          t.kept,
          t.requested > 0 ? ((t.kept / t.requested) * 100).toFixed(1) : '',
        ]);
      }
    }
  }
  if (rows.length === 0) return [];
  return [
    {
      title: 'Synthesized negatives',
      notes: ['Per error type: requested → written → filtered → kept.'],
      tables: [table],
      charts: [acceptanceChart(rows)].filter((c): c is Chart => c !== undefined),
    },
  ];
};

/** Section builders by stage kind; kinds without one get a generic stage table. */
export const SECTIONS: Record<string, SectionBuilder> = { evaluate: evaluateSections, synthesize: synthesizeSections };

export async function buildSections(db: Db, sides: StageSide[]): Promise<Section[]> {
  const out: Section[] = [];
  const kinds = [...new Set(sides.map((s) => s.kind))];
  const generic: Table = { headers: ['stage', 'kind', 'status', 'output'], rows: [] };
  for (const kind of kinds) {
    const mine = sides.filter((s) => s.kind === kind);
    const builder = SECTIONS[kind];
    if (builder) out.push(...(await builder(db, mine, sides)));
    else for (const s of mine) generic.rows.push([`${s.runId}/${s.stageId}`, s.kind, s.status, '']);
  }
  if (generic.rows.length > 0) out.push({ title: 'Other stages', notes: [], tables: [generic], charts: [] });
  return out;
}
