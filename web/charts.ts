/**
 * Vega-Lite specs of the plots the report and the dashboard draw. Each chart says how many bars
 * (or points) it draws, so the browser tests can check that every plot is complete.
 */
import type { PairResult, SideSummary } from '../activities/compare/comparison.js';

export interface Chart {
  title: string;
  spec: Record<string, unknown>;
  /** Marks of the main layer (bars or points) a complete drawing has. */
  marks: number;
  /** The main layer's Vega mark type: `rect` (bars) or `symbol` (points). */
  markType: 'rect' | 'symbol';
}

const base = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', width: 'container', height: 220 } as const;
const pct = (v: number | null | undefined) => (v === null || v === undefined ? null : Math.round(v * 1000) / 10);

/** Per-category accuracy (and overall, macro) per stage, with 95% CIs as rules. */
export function categoryAccuracyChart(sides: SideSummary[]): Chart | undefined {
  const rows = sides.flatMap((s) => [
    ...(s.accuracy ? [{ side: s.label, scope: 'overall', value: pct(s.accuracy.value), lo: pct(s.accuracy.ciLow), hi: pct(s.accuracy.ciHigh) }] : []),
    ...(s.macro ? [{ side: s.label, scope: 'macro', value: pct(s.macro.value), lo: pct(s.macro.ciLow), hi: pct(s.macro.ciHigh) }] : []),
    ...Object.entries(s.categories).map(([c, v]) => ({ side: s.label, scope: c, value: pct(v.value), lo: pct(v.ciLow), hi: pct(v.ciHigh) })),
  ]);
  if (rows.length === 0) return undefined;
  return {
    title: `Accuracy by category (%, 95% bootstrap CI; unparseable ${sides[0]!.policy})`,
    marks: rows.length,
    markType: 'rect',
    spec: {
      ...base,
      data: { values: rows },
      encoding: { x: { field: 'scope', type: 'nominal', title: null, sort: null }, xOffset: { field: 'side' } },
      layer: [
        {
          mark: 'bar',
          encoding: {
            y: { field: 'value', type: 'quantitative', title: 'accuracy %', scale: { domain: [0, 100] } },
            color: { field: 'side', title: 'stage' },
            tooltip: [{ field: 'side' }, { field: 'scope' }, { field: 'value' }, { field: 'lo' }, { field: 'hi' }],
          },
        },
        { mark: { type: 'rule', color: '#222' }, encoding: { y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } } },
      ],
    },
  };
}

/** First-position rate per stage: 100/K is an unbiased judge's. */
export function positionBiasChart(sides: SideSummary[]): Chart | undefined {
  const rows = sides
    .filter((s) => s.firstPositionRate !== null)
    .map((s) => ({ side: s.label, value: pct(s.firstPositionRate), consistency: pct(s.positionConsistency) }));
  if (rows.length === 0) return undefined;
  return {
    title: 'Position bias: how often the judge picks the first shown candidate (%)',
    marks: rows.length,
    markType: 'rect',
    spec: {
      ...base,
      data: { values: rows },
      mark: 'bar',
      encoding: {
        x: { field: 'side', type: 'nominal', title: null, sort: null },
        y: { field: 'value', type: 'quantitative', title: 'first-position %', scale: { domain: [0, 100] } },
        color: { field: 'side', legend: null },
        tooltip: [{ field: 'side' }, { field: 'value' }, { field: 'consistency', title: 'consistency %' }],
      },
    },
  };
}

/** Mean output tokens per judged sample, per stage. */
export function tokensChart(sides: SideSummary[]): Chart | undefined {
  const rows = sides
    .filter((s) => s.meanOutputTokens !== null)
    .map((s) => ({ side: s.label, tokens: Math.round(s.meanOutputTokens!), requests: s.requests, cached: s.requestsCached, cost: s.costUsd }));
  if (rows.length === 0) return undefined;
  return {
    title: 'Mean output tokens per judge call',
    marks: rows.length,
    markType: 'rect',
    spec: {
      ...base,
      data: { values: rows },
      mark: 'bar',
      encoding: {
        x: { field: 'side', type: 'nominal', title: null, sort: null },
        y: { field: 'tokens', type: 'quantitative', title: 'tokens' },
        color: { field: 'side', legend: null },
        tooltip: [{ field: 'side' }, { field: 'tokens' }, { field: 'requests' }, { field: 'cached' }, { field: 'cost' }],
      },
    },
  };
}

/** Paired differences B − A with their 95% CIs. */
export function pairsChart(pairs: PairResult[]): Chart | undefined {
  if (pairs.length === 0) return undefined;
  const scale = pairs[0]!.metric === 'accuracy' ? 100 : 1;
  const rows = pairs.map((p) => ({
    pair: `${p.b} vs ${p.a}`,
    delta: p.delta * scale,
    lo: p.ci[0] * scale,
    hi: p.ci[1] * scale,
    shared: p.shared,
    p: p.mcnemar?.p ?? p.pBootstrap,
  }));
  return {
    title: `Paired difference B − A on shared items (${pairs[0]!.metric}${scale === 100 ? ', points' : ''}, 95% paired bootstrap CI)`,
    marks: rows.length,
    markType: 'symbol',
    spec: {
      ...base,
      height: Math.max(80, 28 * rows.length),
      data: { values: rows },
      layer: differenceLayers(),
    },
  };
}

/** synthesize: share of requested negatives kept, per error type and stage. */
export function acceptanceChart(rows: { side: string; errorType: string; requested: number; kept: number }[]): Chart | undefined {
  if (rows.length === 0) return undefined;
  const values = rows.map((r) => ({ ...r, rate: r.requested > 0 ? Math.round((r.kept / r.requested) * 1000) / 10 : 0 }));
  return {
    title: 'Negatives kept per error type (% of requested)',
    marks: values.length,
    markType: 'rect',
    spec: {
      ...base,
      data: { values },
      mark: 'bar',
      encoding: {
        x: { field: 'errorType', type: 'nominal', title: null },
        xOffset: { field: 'side' },
        y: { field: 'rate', type: 'quantitative', title: 'kept %', scale: { domain: [0, 100] } },
        color: { field: 'side', title: 'stage' },
        tooltip: [{ field: 'side' }, { field: 'errorType' }, { field: 'requested' }, { field: 'kept' }, { field: 'rate' }],
      },
    },
  };
}

/** A point of a sweep curve as the plots draw it. */
export interface CurveRow {
  side: string;
  strategy: string;
  n: number;
  score: number;
  lo: number | null;
  hi: number | null;
  costUsd: number;
  tokens: number;
}

const round = (v: number | null, digits = 1) => (v === null ? null : Math.round(v * 10 ** digits) / 10 ** digits);

function curveSpec(rows: CurveRow[], x: { field: string; title: string; log: boolean; ticks?: number[] }): Record<string, unknown> {
  const many = new Set(rows.map((r) => r.side)).size > 1;
  const values = rows.map((r) => ({
    ...r,
    score: round(r.score),
    lo: round(r.lo),
    hi: round(r.hi),
    costUsd: round(r.costUsd, 6),
    series: `${r.side} · ${r.strategy}`,
  }));
  const xEnc = {
    field: x.field,
    type: 'quantitative',
    title: x.title,
    scale: x.log ? { type: 'log', base: 2 } : { zero: false },
    ...(x.ticks ? { axis: { values: x.ticks, format: 'd' } } : {}),
  };
  const sideEnc = many ? { strokeDash: { field: 'side', title: 'stage' } } : {};
  return {
    ...base,
    height: 260,
    data: { values },
    layer: [
      {
        mark: { type: 'line', opacity: 0.8 },
        encoding: { x: xEnc, y: { field: 'score', type: 'quantitative' }, color: { field: 'strategy' }, detail: { field: 'series' }, ...sideEnc },
      },
      {
        mark: { type: 'rule', opacity: 0.5 },
        encoding: { x: xEnc, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' }, color: { field: 'strategy' } },
      },
      {
        mark: { type: 'point', filled: true, size: 40 },
        encoding: {
          x: xEnc,
          y: { field: 'score', type: 'quantitative', title: 'score (×100)' },
          color: { field: 'strategy', title: 'strategy' },
          ...(many ? { shape: { field: 'side', title: 'stage' } } : {}),
          tooltip: [
            { field: 'side' },
            { field: 'strategy' },
            { field: 'n', title: 'N' },
            { field: 'score' },
            { field: 'lo' },
            { field: 'hi' },
            { field: 'costUsd', title: 'USD' },
            { field: 'tokens' },
          ],
        },
      },
    ],
  };
}

/** sweep: score vs N per strategy (and stage), with 95% CIs as rules; one point per (stage, strategy, N). */
export function sweepCurveChart(rows: CurveRow[]): Chart | undefined {
  if (rows.length === 0) return undefined;
  return {
    title: 'Best-of-N: score vs N (95% bootstrap CI over questions)',
    marks: rows.length,
    markType: 'symbol',
    spec: curveSpec(rows, { field: 'n', title: 'N (log scale)', log: true, ticks: [...new Set(rows.map((r) => r.n))].sort((a, b) => a - b) }),
  };
}

/** sweep: score vs what one best-of-N run over the questions costs (USD; tokens when no endpoint has a price). */
export function sweepCostChart(rows: CurveRow[]): Chart | undefined {
  if (rows.length === 0) return undefined;
  const priced = rows.some((r) => r.costUsd > 0);
  const field = priced ? 'costUsd' : 'tokens';
  return {
    title: `Best-of-N: score vs ${priced ? 'cost (USD' : 'tokens (no prices set'} for one run over the questions)`,
    marks: rows.length,
    markType: 'symbol',
    spec: curveSpec(rows, { field, title: priced ? 'USD (log scale)' : 'tokens (log scale)', log: rows.every((r) => (priced ? r.costUsd : r.tokens) > 0) }),
  };
}

/** Differences B − A with their 95% CIs, one point per row (a pair of stages, or a pair at one N). */
export function deltaChart(
  title: string,
  rows: { pair: string; delta: number; lo: number; hi: number; shared: number | null; p: number }[],
): Chart | undefined {
  if (rows.length === 0) return undefined;
  return {
    title,
    marks: rows.length,
    markType: 'symbol',
    spec: {
      ...base,
      height: Math.max(80, 24 * rows.length),
      data: { values: rows.map((r) => ({ ...r, delta: round(r.delta, 2), lo: round(r.lo, 2), hi: round(r.hi, 2) })) },
      layer: differenceLayers({ labelLimit: 360 }),
    },
  };
}

/** A rate of one stage as the bar plots draw it (0–1 with its 95% CI). */
export interface RateRow {
  side: string;
  measure: string;
  rate: number;
  lo: number | null;
  hi: number | null;
  k: number;
  n: number;
}

function rateBars(title: string, yTitle: string, rows: RateRow[]): Chart | undefined {
  if (rows.length === 0) return undefined;
  const values = rows.map((r) => ({ ...r, rate: pct(r.rate), lo: pct(r.lo), hi: pct(r.hi) }));
  return {
    title,
    marks: rows.length,
    markType: 'rect',
    spec: {
      ...base,
      data: { values },
      encoding: { x: { field: 'measure', type: 'nominal', title: null, sort: null }, xOffset: { field: 'side' } },
      layer: [
        {
          mark: 'bar',
          encoding: {
            y: { field: 'rate', type: 'quantitative', title: yTitle, scale: { domain: [0, 100] } },
            color: { field: 'side', title: 'stage' },
            tooltip: [{ field: 'side' }, { field: 'measure' }, { field: 'rate' }, { field: 'lo' }, { field: 'hi' }, { field: 'k' }, { field: 'n' }],
          },
        },
        { mark: { type: 'rule', color: '#222' }, encoding: { y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } } },
      ],
    },
  };
}

/** distill: items accepted (overall, at the first attempt, per error type), per stage, with 95% Wilson CIs. */
export function distillAcceptanceChart(rows: RateRow[]): Chart | undefined {
  return rateBars('Distill: items with an accepted trace (%, 95% Wilson CI)', 'accepted %', rows);
}

/** distill: traces accepted and rejected per reason, as shares of the traces tried, per stage. */
export function distillTracesChart(rows: RateRow[]): Chart | undefined {
  return rateBars('Distill: traces accepted and rejected by reason (% of traces tried, 95% Wilson CI)', '% of traces', rows);
}

/**
 * The layers of a B − A plot over rows `{ pair, delta, lo, hi, shared, p }`: the interval as a rule,
 * the difference as a point, and a dashed line at zero.
 */
function differenceLayers(axis?: Record<string, unknown>) {
  return [
    {
      mark: 'rule',
      encoding: {
        y: { field: 'pair', type: 'nominal', title: null, sort: null, ...(axis && { axis }) },
        x: { field: 'lo', type: 'quantitative', title: 'B − A' },
        x2: { field: 'hi' },
      },
    },
    {
      mark: { type: 'point', filled: true, size: 60 },
      encoding: {
        y: { field: 'pair', type: 'nominal', sort: null },
        x: { field: 'delta', type: 'quantitative' },
        tooltip: [{ field: 'pair' }, { field: 'delta' }, { field: 'lo' }, { field: 'hi' }, { field: 'shared' }, { field: 'p' }],
      },
    },
    {
      data: { values: [{ zero: 0 }] },
      mark: { type: 'rule', strokeDash: [4, 4], color: '#888' },
      encoding: { x: { field: 'zero', type: 'quantitative' } },
    },
  ];
}
