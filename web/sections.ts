/**
 * What a report or dashboard page shows of a set of stages, one builder per stage kind (evaluate,
 * synthesize, sweep: scaling curves, distill: acceptance rates). A new kind plugs in by adding its
 * builder to SECTIONS.
 */
import { buildComparison, CompareRefusedError, labelOf, summarize, type Comparison } from '../activities/compare/comparison.js';
import { buildDistillComparison, loadDistillSummary, type DistillSideSummary } from '../activities/compare/distill.js';
import type { Policy, Proportion } from '../activities/compare/stats.js';
import { buildSweepComparison, strategyOrder } from '../activities/compare/sweep.js';
import type { SweepParams } from '../spec/kinds/sweep.js';
import type { Db } from '../db/client.js';
import { runArtifacts } from '../db/artifacts.js';
import { loadCurvePoints, type StageSide } from '../db/compare.js';
import {
  acceptanceChart,
  categoryAccuracyChart,
  deltaChart,
  distillAcceptanceChart,
  distillTracesChart,
  pairsChart,
  positionBiasChart,
  sweepCostChart,
  sweepCurveChart,
  tokensChart,
  type Chart,
  type CurveRow,
  type RateRow,
} from './charts.js';

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

/** A bootstrap p of 0: no resample crossed zero, so p < 1/resamples. */
const pBoot = (p: number, resamples: number) => (p === 0 ? `< ${1 / resamples}` : p.toPrecision(3));

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
              pBoot(p.pBootstrap, cmp.resamples),
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

const present = <T>(xs: (T | undefined)[]) => xs.filter((x): x is T => x !== undefined);

const sweepSections: SectionBuilder = async (db, sides, all) => {
  const done = sides.filter((s) => s.status === 'succeeded' && s.ref.artifactId !== undefined);
  if (done.length === 0) return [];
  const peers = all.filter((x) => x.kind === 'sweep');
  const rows: CurveRow[] = [];
  const labels = done.map((s) => labelOf(s, peers));
  for (const [i, s] of done.entries())
    for (const p of await loadCurvePoints(db, Number(s.ref.artifactId)))
      if (p.capability === 'total')
        rows.push({ side: labels[i]!, strategy: p.strategy, n: p.n, score: p.score, lo: p.ciLow, hi: p.ciHigh, costUsd: p.costUsd, tokens: p.tokens });
  const strategies = [...new Set(done.flatMap((s) => strategyOrder(s.params as SweepParams, rows)))];
  const ns = [...new Set(rows.map((r) => r.n))].sort((a, b) => a - b);
  const table: Table = { headers: ['strategy', 'N', ...labels.flatMap((l) => [l, 'USD', 'tokens'])], rows: [] };
  for (const strategy of strategies)
    for (const n of ns) {
      const cells = labels.map((l) => rows.find((r) => r.side === l && r.strategy === strategy && r.n === n));
      if (cells.every((c) => c === undefined)) continue;
      table.rows.push([
        strategy,
        n,
        ...cells.flatMap((c) =>
          c
            ? [
                `${c.score.toFixed(1)}${c.lo !== null && c.hi !== null ? ` [${c.lo.toFixed(1)}, ${c.hi.toFixed(1)}]` : ''}`,
                c.costUsd.toFixed(5),
                Math.round(c.tokens),
              ]
            : ['–', '', ''],
        ),
      ]);
    }
  const out: Section[] = [
    {
      title: 'Best-of-N scaling curves',
      notes: [
        'Score ×100 of the selected answers, 95% bootstrap CI over questions; USD and tokens of one best-of-N run over all questions (policy samples and judge calls).',
      ],
      tables: [table],
      charts: present([sweepCurveChart(rows), sweepCostChart(rows)]),
    },
  ];
  if (done.length >= 2) {
    try {
      const cmp = await buildSweepComparison(db, done, { resamples: 1000 });
      out.push({
        title: 'Best-of-N: paired differences on shared questions',
        notes: [`B − A in points at each (strategy, N) both stages have; 95% paired bootstrap (${cmp.resamples} resamples, seed ${cmp.seed}).`],
        tables: [
          {
            headers: ['A', 'B', 'strategy', 'N', 'shared', 'A', 'B', 'B − A', '95% CI', 'p (bootstrap)'],
            rows: cmp.pairs.map((p) => [
              p.a,
              p.b,
              p.strategy,
              p.n,
              p.shared,
              p.valueA.toFixed(1),
              p.valueB.toFixed(1),
              p.delta.toFixed(1),
              `[${p.ci[0].toFixed(1)}, ${p.ci[1].toFixed(1)}]`,
              pBoot(p.pBootstrap, cmp.resamples),
            ]),
          },
        ],
        charts: present([
          deltaChart(
            'Best-of-N: B − A at each N (points, 95% paired bootstrap CI)',
            cmp.pairs.map((p) => ({
              pair: `${p.strategy} N=${p.n}: ${p.b} vs ${p.a}`,
              delta: p.delta,
              lo: p.ci[0],
              hi: p.ci[1],
              shared: p.shared,
              p: p.pBootstrap,
            })),
          ),
        ]),
      });
    } catch (err) {
      if (!(err instanceof CompareRefusedError)) throw err;
      out[0]!.notes.push(`Not compared pairwise: ${err.message}.`);
    }
  }
  return out;
};

const rateCell = (p: Proportion | undefined) =>
  p === undefined || p.n === 0 ? '–' : `${withCi({ value: p.rate, ciLow: p.ciLow, ciHigh: p.ciHigh })} (${p.k}/${p.n})`;
const rateRow = (side: string, measure: string, p: Proportion): RateRow => ({ side, measure, rate: p.rate, lo: p.ciLow, hi: p.ciHigh, k: p.k, n: p.n });

const distillSections: SectionBuilder = async (db, sides, all) => {
  const peers = all.filter((x) => x.kind === 'distill');
  const done = sides.filter((s) => s.status === 'succeeded');
  const summaries = present<DistillSideSummary>(await Promise.all(done.map((s) => loadDistillSummary(db, s, labelOf(s, peers)))));
  if (summaries.length === 0) return [];
  const types = [...new Set(summaries.flatMap((s) => Object.keys(s.errorTypes)))].sort();
  const reasons = [...new Set(summaries.flatMap((s) => Object.keys(s.rejections)))].sort();
  const none = (n: number): Proportion => ({ k: 0, n, rate: 0, ciLow: null, ciHigh: null });
  const itemRows = summaries.flatMap((s) => [
    rateRow(s.label, 'items accepted', s.accepted),
    rateRow(s.label, 'at attempt 1', s.firstAttempt),
    ...types.filter((t) => s.errorTypes[t]).map((t) => rateRow(s.label, t, s.errorTypes[t]!)),
  ]);
  const traceRows = summaries.flatMap((s) => [
    rateRow(s.label, 'accepted', s.traces),
    ...reasons.map((r) => rateRow(s.label, r, s.rejections[r] ?? none(s.traces.n))),
  ]);
  const out: Section[] = [
    {
      title: 'Distillation acceptance',
      notes: ['Items with an accepted trace (of the source items read), and traces accepted or rejected by reason (of the traces tried); 95% Wilson CIs.'],
      tables: [
        {
          headers: ['measure', ...summaries.map((s) => `${s.label} (hint ${s.hint ? 'on' : 'off'}, ≤${s.maxAttempts} attempts)`)],
          rows: [
            ['items accepted', ...summaries.map((s) => rateCell(s.accepted))],
            ['accepted at attempt 1', ...summaries.map((s) => rateCell(s.firstAttempt))],
            ...types.map((t) => [`error type: ${t}`, ...summaries.map((s) => rateCell(s.errorTypes[t]))]),
            ['traces accepted', ...summaries.map((s) => rateCell(s.traces))],
            ...reasons.map((r) => [`rejected: ${r}`, ...summaries.map((s) => rateCell(s.rejections[r] ?? none(s.traces.n)))]),
          ],
        },
      ],
      charts: present([distillAcceptanceChart(itemRows), distillTracesChart(traceRows)]),
    },
  ];
  if (done.length >= 2) {
    try {
      const cmp = await buildDistillComparison(db, done, { resamples: 1000 });
      out.push({
        title: 'Distillation: differences B − A',
        notes: [
          `Item rates paired on the items both stages read (exact McNemar, 95% paired bootstrap CI, ${cmp.resamples} resamples, seed ${cmp.seed}); trace rates by a two-proportion z-test (95% Wald CI).`,
        ],
        tables: [
          {
            headers: ['A', 'B', 'measure', 'n', 'A %', 'B %', 'B − A', '95% CI', 'test', 'p'],
            rows: cmp.pairs.map((p) => [
              p.a,
              p.b,
              p.measure,
              p.shared !== null ? `${p.shared} shared` : `${p.nA} / ${p.nB}`,
              pct(p.valueA),
              pct(p.valueB),
              pct(p.delta),
              `[${pct(p.ci[0])}, ${pct(p.ci[1])}]`,
              p.mcnemar ? `McNemar ${p.mcnemar.b}/${p.mcnemar.c}` : 'two-proportion z',
              p.p.toPrecision(3),
            ]),
          },
        ],
        charts: present([
          deltaChart(
            'Distillation: B − A (points, 95% CI)',
            cmp.pairs.map((p) => ({
              pair: `${p.measure}: ${p.b} vs ${p.a}`,
              delta: p.delta * 100,
              lo: p.ci[0] * 100,
              hi: p.ci[1] * 100,
              shared: p.shared,
              p: p.p,
            })),
          ),
        ]),
      });
    } catch (err) {
      if (!(err instanceof CompareRefusedError)) throw err;
      out[0]!.notes.push(`Not compared pairwise: ${err.message}.`);
    }
  }
  return out;
};

/** Section builders by stage kind; kinds without one get a generic stage table. */
export const SECTIONS: Record<string, SectionBuilder> = {
  evaluate: evaluateSections,
  synthesize: synthesizeSections,
  sweep: sweepSections,
  distill: distillSections,
};

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
