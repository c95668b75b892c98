import { buildComparison, COMPARE_METRICS, CompareRefusedError, type CompareMetric, type Comparison } from '../../activities/compare/comparison.js';
import { buildDistillComparison, type DistillComparison } from '../../activities/compare/distill.js';
import { buildSweepComparison, type SweepComparison } from '../../activities/compare/sweep.js';
import { parseFlags } from '../args.js';
import { resolveSides } from '../compare-sides.js';
import { connect } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';
import { table } from '../render.js';

const USAGE = `usage: judgeflow compare <run|run/stage>... | --group G [--kind K] [--by AXIS] [--metric M] [--resamples N] [--json]

Compares stages of one kind (--kind evaluate|sweep|distill; default: the first of these with two
or more stages among those named).

evaluate: puts the stages side by side: headline accuracy with its 95% CI, macro, first-position rate,
tokens; then each stage against its baseline on the items both judged: the difference B − A with
a 95% paired-bootstrap CI and p-value, the exact McNemar p-value (accuracy; items scored 0 or 1 on
both sides) and the number of shared items. The baseline is the first stage named, or with --by
the run of the group with the same other axis values and the axis's first value.
Refuses (exit 2) stages that judged different datasets or dataset versions, scored unparseable
outputs differently, or filed items under different categories.
sweep: the curves side by side (score vs N per strategy with their 95% CIs, and what each point
costs); then per (strategy, N) both have, B − A on the questions both scored with a 95% paired
bootstrap CI and the number of shared questions. Refuses different question sets or graders.
distill: acceptance rates side by side with 95% Wilson CIs: items accepted, accepted at the first
attempt, per error type, traces accepted and rejected per reason; then B − A: paired on the items
both read (exact McNemar, paired bootstrap CI) for item rates, a two-proportion z-test for trace
rates. Refuses stages that read different source items.
  --kind K        evaluate, sweep or distill
  --metric M      evaluate: accuracy (default) or output_tokens (mean per item)
  --resamples N   bootstrap resamples (default 1000; seeded with the first run's seed)
  --json          the comparison as JSON`;

export async function compareCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      group: { type: 'string' },
      kind: { type: 'string' },
      by: { type: 'string' },
      metric: { type: 'string' },
      resamples: { type: 'string' },
      json: { type: 'boolean' },
    },
    USAGE,
  );
  const metric = (values.metric ?? 'accuracy') as CompareMetric;
  if (!COMPARE_METRICS.includes(metric)) throw new UsageError(`--metric ${values.metric}: use one of ${COMPARE_METRICS.join(', ')}`);
  const resamples = values.resamples === undefined ? 1000 : Number(values.resamples);
  if (!Number.isInteger(resamples) || resamples <= 0) throw new UsageError(`--resamples must be a positive whole number, got "${values.resamples}"`);
  if (values.kind !== undefined && !(COMPARED_KINDS as readonly string[]).includes(values.kind))
    throw new UsageError(`--kind ${values.kind}: use one of ${COMPARED_KINDS.join(', ')}`);
  const conn = await connect();
  try {
    const sides = await resolveSides(conn.db.db, positionals, values.group);
    const kind = (values.kind as ComparedKind | undefined) ?? COMPARED_KINDS.find((k) => sides.filter((s) => s.kind === k).length >= 2) ?? 'evaluate';
    let text: string;
    let json: Comparison | SweepComparison | DistillComparison;
    try {
      if (kind === 'sweep') {
        const cmp = await buildSweepComparison(conn.db.db, sides, { by: values.by, resamples });
        [json, text] = [cmp, renderSweepComparison(cmp)];
      } else if (kind === 'distill') {
        const cmp = await buildDistillComparison(conn.db.db, sides, { by: values.by, resamples });
        [json, text] = [cmp, renderDistillComparison(cmp)];
      } else {
        const cmp = await buildComparison(conn.db.db, sides, { metric, by: values.by, resamples });
        [json, text] = [cmp, renderComparison(cmp)];
      }
    } catch (err) {
      if (err instanceof CompareRefusedError) {
        console.error(`judgeflow compare: refused: ${err.message}`);
        return EXIT.usage;
      }
      throw err;
    }
    const others = COMPARED_KINDS.filter((k) => k !== kind && sides.filter((s) => s.kind === k).length >= 2);
    if (!values.json && others.length > 0) text += `\n\nalso comparable here: ${others.map((k) => `--kind ${k}`).join(', ')}`;
    console.log(values.json ? JSON.stringify(json) : text);
    return EXIT.ok;
  } finally {
    await conn.close();
  }
}

const COMPARED_KINDS = ['evaluate', 'sweep', 'distill'] as const;
type ComparedKind = (typeof COMPARED_KINDS)[number];

const pct = (v: number | null | undefined) => (v === null || v === undefined || Number.isNaN(v) ? '' : (v * 100).toFixed(1));
const ci = (lo: number | null | undefined, hi: number | null | undefined) =>
  lo === null || lo === undefined || hi === null || hi === undefined ? '' : ` [${pct(lo)}, ${pct(hi)}]`;
const pval = (p: number) => (Number.isNaN(p) ? '' : p < 0.0001 ? p.toExponential(1) : p.toFixed(4));
/** A bootstrap p of 0: no resample crossed zero, so p < 1/resamples. */
const pboot = (p: number, resamples: number) => (p === 0 ? `< ${1 / resamples}` : pval(p));

export function renderComparison(cmp: Comparison): string {
  const cats = [...new Set(cmp.sides.flatMap((s) => Object.keys(s.categories)))].sort();
  const sideRows = cmp.sides.map((s) => [
    s.label,
    s.accuracy ? `${pct(s.accuracy.value)}${ci(s.accuracy.ciLow, s.accuracy.ciHigh)}` : '',
    s.macro ? pct(s.macro.value) : '',
    ...cats.map((c) => pct(s.categories[c]?.value)),
    pct(s.firstPositionRate),
    s.meanOutputTokens === null ? '' : String(Math.round(s.meanOutputTokens)),
    s.reusedFrom ? `reused from ${s.reusedFrom}` : '',
  ]);
  const out = [
    `accuracy % (unparseable outputs ${cmp.policy === 'excluded' ? 'excluded' : 'counted wrong'}), dataset artifact ${cmp.sides[0]!.dataset.artifactId} (${cmp.sides[0]!.dataset.hash.slice(0, 12)})`,
    table(['stage', `accuracy (${cmp.policy})`, 'macro', ...cats, 'first-pos', 'out tok', 'note'], sideRows),
  ];
  if (cmp.pairs.length > 0) {
    const isAcc = cmp.metric === 'accuracy';
    const fmt = (v: number) => (isAcc ? pct(v) : v.toFixed(1));
    out.push(
      `\npaired on shared items: B − A, ${cmp.metric}${isAcc ? ' (points)' : ''}, 95% paired bootstrap (${cmp.resamples} resamples, seed ${cmp.seed})${isAcc ? '; exact McNemar on items scored 0/1 on both sides' : ''}`,
      table(
        ['A', 'B', 'shared', 'A', 'B', 'B − A', '95% CI', 'p (bootstrap)', ...(isAcc ? ['McNemar b/c', 'p (McNemar)'] : [])],
        cmp.pairs.map((p) => [
          p.a,
          p.b,
          p.shared,
          fmt(p.valueA),
          fmt(p.valueB),
          `${p.delta >= 0 ? '+' : ''}${fmt(p.delta)}`,
          `[${fmt(p.ci[0])}, ${fmt(p.ci[1])}]`,
          pboot(p.pBootstrap, cmp.resamples),
          ...(p.mcnemar ? [`${p.mcnemar.b}/${p.mcnemar.c} of ${p.mcnemar.items}`, pval(p.mcnemar.p)] : []),
        ]),
      ),
    );
  }
  return out.join('\n');
}

const pts = (v: number | null | undefined) => (v === null || v === undefined || Number.isNaN(v) ? '' : v.toFixed(1));
const signed = (v: number, f: (x: number) => string) => `${v >= 0 ? '+' : ''}${f(v)}`;
const usd = (v: number | null) => (v === null ? '' : v < 0.01 ? v.toFixed(5) : v.toFixed(3));

export function renderSweepComparison(cmp: SweepComparison): string {
  const first = cmp.sides[0]!;
  const out = [
    `score ×100 by N (95% bootstrap CI over questions) and USD of one best-of-N run; questions artifact ${first.dataset.artifactId} (${first.dataset.hash.slice(0, 12)}), grader ${first.grader}`,
  ];
  const strategies = [...new Set(cmp.sides.flatMap((s) => s.strategies))];
  const ns = [...new Set(cmp.sides.flatMap((s) => s.n))].sort((a, b) => a - b);
  const rows: (string | number)[][] = [];
  for (const strategy of strategies)
    for (const n of ns) {
      const cells = cmp.sides.map((s) => s.points.find((p) => p.strategy === strategy && p.n === n));
      if (cells.every((c) => c === undefined)) continue;
      rows.push([
        strategy,
        n,
        ...cells.flatMap((p) => (p ? [`${pts(p.score)}${p.ciLow !== null ? ` [${pts(p.ciLow)}, ${pts(p.ciHigh)}]` : ''}`, usd(p.costUsd)] : ['–', ''])),
      ]);
    }
  out.push(table(['strategy', 'N', ...cmp.sides.flatMap((s) => [s.label + (s.reusedFrom ? ` (reused from ${s.reusedFrom})` : ''), '$'])], rows));
  if (cmp.pairs.length > 0) {
    out.push(
      `\npaired on shared questions: B − A in points, 95% paired bootstrap (${cmp.resamples} resamples, seed ${cmp.seed})`,
      table(
        ['A', 'B', 'strategy', 'N', 'shared', 'A', 'B', 'B − A', '95% CI', 'p (bootstrap)', '$ A', '$ B'],
        cmp.pairs.map((p) => [
          p.a,
          p.b,
          p.strategy,
          p.n,
          p.shared,
          pts(p.valueA),
          pts(p.valueB),
          signed(p.delta, pts),
          `[${pts(p.ci[0])}, ${pts(p.ci[1])}]`,
          pboot(p.pBootstrap, cmp.resamples),
          usd(p.costA),
          usd(p.costB),
        ]),
      ),
    );
  }
  return out.join('\n');
}

export function renderDistillComparison(cmp: DistillComparison): string {
  const first = cmp.sides[0]!;
  const rate = (p: { k: number; n: number; rate: number; ciLow: number | null; ciHigh: number | null } | undefined) =>
    p === undefined || p.n === 0 ? '–' : `${pct(p.rate)}${ci(p.ciLow, p.ciHigh)} (${p.k}/${p.n})`;
  const types = [...new Set(cmp.sides.flatMap((s) => Object.keys(s.errorTypes)))].sort();
  const reasons = [...new Set(cmp.sides.flatMap((s) => Object.keys(s.rejections)))].sort();
  const rows: string[][] = [
    ['items accepted', ...cmp.sides.map((s) => rate(s.accepted))],
    ['accepted at attempt 1', ...cmp.sides.map((s) => rate(s.firstAttempt))],
    ...types.map((t) => [`error type: ${t}`, ...cmp.sides.map((s) => rate(s.errorTypes[t]))]),
    ['traces accepted', ...cmp.sides.map((s) => rate(s.traces))],
    ...reasons.map((r) => [`rejected: ${r}`, ...cmp.sides.map((s) => rate(s.rejections[r] ?? { k: 0, n: s.traces.n, rate: 0, ciLow: null, ciHigh: null }))]),
  ];
  const out = [
    `acceptance % (95% Wilson CI) (count), source items artifact ${first.dataset.artifactId} (${first.dataset.hash.slice(0, 12)})`,
    table(
      [
        'measure',
        ...cmp.sides.map((s) => `${s.label} (hint ${s.hint ? 'on' : 'off'}, ≤${s.maxAttempts} attempts)${s.reusedFrom ? ` reused from ${s.reusedFrom}` : ''}`),
      ],
      rows,
    ),
  ];
  if (cmp.pairs.length > 0) {
    out.push(
      `\nB − A in points: item rates paired on shared items (exact McNemar, 95% paired bootstrap CI, ${cmp.resamples} resamples, seed ${cmp.seed}); trace rates by a two-proportion z-test (95% Wald CI)`,
      table(
        ['A', 'B', 'measure', 'n', 'A %', 'B %', 'B − A', '95% CI', 'test', 'p'],
        cmp.pairs.map((p) => [
          p.a,
          p.b,
          p.measure,
          p.shared !== null ? `${p.shared} shared` : `${p.nA} / ${p.nB}`,
          pct(p.valueA),
          pct(p.valueB),
          signed(p.delta, pct),
          `[${pct(p.ci[0])}, ${pct(p.ci[1])}]`,
          p.mcnemar ? `McNemar ${p.mcnemar.b}/${p.mcnemar.c}` : 'z',
          pval(p.p),
        ]),
      ),
    );
  }
  return out.join('\n');
}
