import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import { artifacts, metrics, stages } from '../../db/schema/index.js';
import { getRun } from '../../db/queries.js';
import { parseFlags } from '../args.js';
import { connect, type Connected } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';
import { printKindResults } from '../kind-results.js';
import { processIo, type Io } from '../io.js';
import { table } from '../render.js';

const USAGE = `usage: judgeflow results <run> [--stage ID] [--all] [--json]

Prints the metrics a run's stages stored: one row per stage with the headline accuracy (its
unparseable-output policy named), macro and per-category accuracy with 95% bootstrap CIs, position
consistency, first-position rate, unparseable rate, output tokens, requests and cost.
  --all    every stored metric (per sub-dataset accuracies, both policies, latency, tokens)
  --json   the metric rows as JSON`;

export async function resultsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { stage: { type: 'string' }, all: { type: 'boolean' }, json: { type: 'boolean' } }, USAGE);
  if (positionals.length !== 1) throw new UsageError(`expected one run id\n\n${USAGE}`);
  const conn = await connect();
  try {
    const runId = positionals[0]!;
    if (!(await getRun(conn.db.db, runId))) throw new UsageError(`no run "${runId}"; \`judgeflow list\` shows the runs`);
    if (values.json) {
      const rows = await loadMetrics(conn, runId, values.stage);
      console.log(JSON.stringify(rows));
    } else {
      await printRunResults(conn, runId, values.stage, Boolean(values.all));
    }
    return EXIT.ok;
  } finally {
    await conn.close();
  }
}

async function loadMetrics(conn: Connected, runId: string, stageId?: string) {
  return conn.db.db
    .select()
    .from(metrics)
    .where(stageId ? and(eq(metrics.runId, runId), eq(metrics.stageId, stageId)) : eq(metrics.runId, runId))
    .orderBy(asc(metrics.stageId), asc(metrics.id));
}

const pct = (v: number) => (v * 100).toFixed(1);

type MetricRowDb = Awaited<ReturnType<typeof loadMetrics>>[number];

function withCi(r: MetricRowDb | undefined): string {
  if (!r) return '';
  return r.ciLow !== null && r.ciHigh !== null ? `${pct(r.value)} [${pct(r.ciLow)}, ${pct(r.ciHigh)}]` : pct(r.value);
}

/**
 * One row per stage: headline accuracy (policy named) with 95% CIs, categories, position bias and
 * cost. `all` lists every stored metric instead.
 */
export async function printRunResults(conn: Connected, runId: string, stageId?: string, all = false, io: Io = processIo): Promise<void> {
  await printMetricsTable(conn, runId, stageId, all, io);
  // Other kinds render their own results (synthesize: negatives per error type).
  await printKindResults(conn, runId, stageId, io);
}

async function printMetricsTable(conn: Connected, runId: string, stageId: string | undefined, all: boolean, io: Io): Promise<void> {
  const rows = await loadMetrics(conn, runId, stageId);
  if (rows.length === 0) return;
  const byStage = new Map<string, MetricRowDb[]>();
  for (const r of rows) byStage.set(r.stageId, [...(byStage.get(r.stageId) ?? []), r]);
  if (all) {
    for (const [stage, list] of byStage) {
      io.out(`\nmetrics of stage ${stage}`);
      io.out(
        table(
          ['metric', 'scope', 'policy', 'value', '95% CI', 'n'],
          list.map((r) => {
            const isRate = /accuracy|rate|consistency/.test(r.metric);
            const fmt = isRate ? pct : (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(4));
            return [r.metric, r.scope, r.policy, fmt(r.value), r.ciLow !== null && r.ciHigh !== null ? `[${fmt(r.ciLow)}, ${fmt(r.ciHigh)}]` : '', r.n];
          }),
        ),
      );
    }
    return;
  }
  const headlinePolicy = rows.find((r) => r.metric === 'headline_accuracy')?.policy ?? 'excluded';
  const categories = [
    ...new Set(rows.filter((r) => r.metric === 'accuracy' && r.scope.startsWith('category:')).map((r) => r.scope.slice('category:'.length))),
  ].sort();
  // Stages with a trained answer format (`answer_format`) add its share and the parseable share, with CIs.
  const formats = rows.some((r) => r.metric === 'format_rate');
  const out: (string | number)[][] = [];
  for (const [stage, list] of byStage) {
    const get = (metric: string, scope = 'overall', policy = '') => list.find((r) => r.metric === metric && r.scope === scope && r.policy === policy);
    const requests = get('requests')?.value ?? 0;
    const cached = get('requests_cached')?.value ?? 0;
    const cost = get('cost_usd')?.value ?? 0;
    out.push([
      stage,
      // Items with an answer of all the stage's items (older runs stored only items_judged).
      get('items_total') ? `${get('items_answered')?.value ?? 0}/${get('items_total')!.value}` : (get('items_judged')?.value ?? ''),
      withCi(get('accuracy', 'overall', headlinePolicy)),
      withCi(get('accuracy', 'macro', headlinePolicy)),
      ...categories.map((c) => withCi(get('accuracy', `category:${c}`, headlinePolicy))),
      get('accuracy', 'overall', headlinePolicy === 'excluded' ? 'wrong' : 'excluded')
        ? pct(get('accuracy', 'overall', headlinePolicy === 'excluded' ? 'wrong' : 'excluded')!.value)
        : '',
      get('position_consistency') ? pct(get('position_consistency')!.value) : '',
      get('first_position_rate') ? pct(get('first_position_rate')!.value) : '',
      withCi(get('unparseable_rate')),
      ...(formats ? [withCi(get('parseable_rate')), withCi(get('format_rate'))] : []),
      get('mean_output_tokens') ? Math.round(get('mean_output_tokens')!.value) : '',
      `${requests} (${cached} cached)`,
      cost > 0 ? `$${cost.toFixed(2)}` : '',
    ]);
  }
  const other = headlinePolicy === 'excluded' ? 'wrong' : 'excluded';
  const skipped = await skippedRowsNote(conn, runId, stageId);
  io.out(
    `\nresults of run ${runId} (${skipped}accuracy %, 95% bootstrap CI; unparseable outputs ${headlinePolicy === 'excluded' ? 'excluded from' : 'counted wrong in'} the headline)`,
  );
  const header = [
    'stage',
    'items',
    `overall (${headlinePolicy})`,
    'macro',
    ...categories,
    `overall (${other})`,
    'consistency',
    'first-pos',
    'unparseable',
    ...(formats ? ['parseable', 'answer format'] : []),
    'out tok',
    'requests',
    'cost',
  ];
  // No endpoint with a price: no cost column.
  if (out.every((row) => row.at(-1) === '')) {
    header.pop();
    for (const row of out) row.pop();
  }
  io.out(table(header, out));
}

/**
 * "1,249 of 1,250 items (1 dataset row skipped); " when the import of a stage's dataset skipped
 * rows (the rows are listed by the launch warning and stored with the imported artifact); '' otherwise.
 */
async function skippedRowsNote(conn: Connected, runId: string, stageId?: string): Promise<string> {
  const outputs = await conn.db.db
    .select({ output: stages.output })
    .from(stages)
    .where(stageId ? and(eq(stages.runId, runId), eq(stages.stageId, stageId)) : eq(stages.runId, runId));
  const ids = [
    ...new Set(outputs.map((o) => (o.output as { ref?: { datasetId?: unknown } } | null)?.ref?.datasetId).filter((id): id is number => typeof id === 'number')),
  ];
  if (ids.length === 0) return '';
  const rows = await conn.db.db
    .select({ name: artifacts.name, items: artifacts.rows, skipped: sql<number>`jsonb_array_length(${artifacts.issues})::int` })
    .from(artifacts)
    .where(inArray(artifacts.id, ids))
    .orderBy(asc(artifacts.name));
  const n = (v: number) => v.toLocaleString('en-US');
  const parts = rows
    .filter((r) => r.skipped > 0)
    .map(
      (r) =>
        `${rows.length > 1 ? `${r.name}: ` : ''}${n(r.items)} of ${n(r.items + r.skipped)} items (${n(r.skipped)} dataset row${r.skipped === 1 ? '' : 's'} skipped)`,
    );
  return parts.length > 0 ? `${parts.join(', ')}; ` : '';
}
