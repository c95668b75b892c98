import { buildComparison, COMPARE_METRICS, CompareRefusedError, type CompareMetric, type Comparison } from '../../activities/compare/comparison.js';
import { parseFlags } from '../args.js';
import { resolveSides } from '../compare-sides.js';
import { connect } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';
import { table } from '../render.js';

const USAGE = `usage: judgeflow compare <run|run/stage>... | --group G [--by AXIS] [--metric M] [--resamples N] [--json]

Puts evaluate stages side by side: headline accuracy with its 95% CI, macro, first-position rate,
tokens; then each stage against its baseline on the items both judged: the difference B − A with
a 95% paired-bootstrap CI and p-value, the exact McNemar p-value (accuracy; items scored 0 or 1 on
both sides) and the number of shared items. The baseline is the first stage named, or with --by
the run of the group with the same other axis values and the axis's first value.
Refuses (exit 2) stages that judged different datasets or dataset versions, scored unparseable
outputs differently, or filed items under different categories.
  --metric M      accuracy (default) or output_tokens (mean per item)
  --resamples N   bootstrap resamples (default 1000; seeded with the first run's seed)
  --json          the comparison as JSON`;

export async function compareCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    { group: { type: 'string' }, by: { type: 'string' }, metric: { type: 'string' }, resamples: { type: 'string' }, json: { type: 'boolean' } },
    USAGE,
  );
  const metric = (values.metric ?? 'accuracy') as CompareMetric;
  if (!COMPARE_METRICS.includes(metric)) throw new UsageError(`--metric ${values.metric}: use one of ${COMPARE_METRICS.join(', ')}`);
  const resamples = values.resamples === undefined ? 1000 : Number(values.resamples);
  if (!Number.isInteger(resamples) || resamples <= 0) throw new UsageError(`--resamples must be a positive whole number, got "${values.resamples}"`);
  const conn = await connect();
  try {
    const sides = await resolveSides(conn.db.db, positionals, values.group);
    let cmp: Comparison;
    try {
      cmp = await buildComparison(conn.db.db, sides, { metric, by: values.by, resamples });
    } catch (err) {
      if (err instanceof CompareRefusedError) {
        console.error(`judgeflow compare: refused: ${err.message}`);
        return EXIT.usage;
      }
      throw err;
    }
    console.log(values.json ? JSON.stringify(cmp) : renderComparison(cmp));
    return EXIT.ok;
  } finally {
    await conn.close();
  }
}

const pct = (v: number | null | undefined) => (v === null || v === undefined || Number.isNaN(v) ? '' : (v * 100).toFixed(1));
const ci = (lo: number | null | undefined, hi: number | null | undefined) =>
  lo === null || lo === undefined || hi === null || hi === undefined ? '' : ` [${pct(lo)}, ${pct(hi)}]`;
const pval = (p: number) => (Number.isNaN(p) ? '' : p < 0.0001 ? p.toExponential(1) : p.toFixed(4));

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
          pval(p.pBootstrap),
          ...(p.mcnemar ? [`${p.mcnemar.b}/${p.mcnemar.c} of ${p.mcnemar.items}`, pval(p.mcnemar.p)] : []),
        ]),
      ),
    );
  }
  return out.join('\n');
}
