import { and, asc, eq } from 'drizzle-orm';
import { metrics } from '../../db/schema/index.js';
import { getRun } from '../../db/queries.js';
import { parseFlags } from '../args.js';
import { connect, type Connected } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';
import { table } from '../render.js';

const USAGE = `usage: judgeflow results <run> [--stage ID] [--json]

Prints the metrics a run's stages stored (accuracy with 95% bootstrap CIs, …).`;

export async function resultsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { stage: { type: 'string' }, json: { type: 'boolean' } }, USAGE);
  if (positionals.length !== 1) throw new UsageError(`expected one run id\n\n${USAGE}`);
  const conn = await connect();
  try {
    const runId = positionals[0]!;
    if (!(await getRun(conn.db.db, runId))) throw new UsageError(`no run "${runId}"; \`judgeflow list\` shows the runs`);
    if (values.json) {
      const rows = await loadMetrics(conn, runId, values.stage);
      console.log(JSON.stringify(rows));
    } else {
      await printRunResults(conn, runId, values.stage);
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

export async function printRunResults(conn: Connected, runId: string, stageId?: string): Promise<void> {
  const rows = await loadMetrics(conn, runId, stageId);
  const byStage = new Map<string, typeof rows>();
  for (const r of rows) byStage.set(r.stageId, [...(byStage.get(r.stageId) ?? []), r]);
  for (const [stage, list] of byStage) {
    console.log(`\nresults of stage ${stage}`);
    console.log(
      table(
        ['metric', 'scope', 'policy', 'value', '95% CI', 'n'],
        list.map((r) => {
          const isRate = r.metric.endsWith('accuracy') || r.metric.endsWith('rate') || r.metric.endsWith('consistency');
          const fmt = isRate ? pct : (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(4));
          return [
            r.metric,
            r.scope,
            r.policy,
            fmt(r.value),
            r.ciLow !== null && r.ciHigh !== null ? `[${fmt(r.ciLow)}, ${fmt(r.ciHigh)}]` : '',
            r.n,
          ];
        }),
      ),
    );
  }
}
