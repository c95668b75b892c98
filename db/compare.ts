/** What `judgeflow compare`, the report and the dashboard read of evaluate stages. */
import type { Db } from './client.js';
import type { JudgmentSample } from '../activities/compare/stats.js';

export interface StageSide {
  runId: string;
  stageId: string;
  kind: string;
  status: string;
  /** The stage whose rows hold the per-item data: itself, or the stage it reused. */
  origin: { runId: string; stageId: string };
  axes: Record<string, unknown> | null;
  groupId: string | null;
  seed: number;
  params: Record<string, unknown>;
  /** The mc-items artifact evaluated, with its content hash. */
  datasetId: number | null;
  datasetHash: string | null;
  datasetName: string | null;
  metrics: { metric: string; scope: string; policy: string; value: number; ciLow: number | null; ciHigh: number | null; n: number }[];
}

/**
 * The stages of the given runs (all their stages, or the named ones), in the order asked, with
 * their plan params, evaluated artifact and metrics. Unknown runs or stages are returned in `missing`.
 */
export async function loadStageSides(db: Db, wanted: { runId: string; stageId?: string }[]): Promise<{ sides: StageSide[]; missing: string[] }> {
  const runIds = [...new Set(wanted.map((w) => w.runId))];
  const res = await db.$client.query<{
    run_id: string;
    stage_id: string;
    kind: string;
    status: string;
    origin_run: string;
    origin_stage: string;
    axes: Record<string, unknown> | null;
    group_id: string | null;
    seed: number;
    plan: { id: string; params: Record<string, unknown> }[];
    output: { ref?: { datasetId?: number } } | null;
    dataset_hash: string | null;
    dataset_name: string | null;
  }>(
    `select s.run_id, s.stage_id, s.kind, s.status, coalesce(s.reused_from_run, s.run_id) as origin_run, coalesce(s.reused_from_stage, s.stage_id) as origin_stage,
            r.axes, r.group_id, r.seed, r.plan, s.output, a.content_hash as dataset_hash, a.name as dataset_name
     from stages s join runs r on r.id = s.run_id
     left join artifacts a on a.id = (s.output->'ref'->>'datasetId')::int
     where s.run_id = any($1::text[])
     order by s.run_id, s.started_at nulls last, s.stage_id`,
    [runIds],
  );
  const metricRows = await db.$client.query<{
    run_id: string;
    stage_id: string;
    metric: string;
    scope: string;
    policy: string;
    value: number;
    ci_low: number | null;
    ci_high: number | null;
    n: number;
  }>('select run_id, stage_id, metric, scope, policy, value, ci_low, ci_high, n from metrics where run_id = any($1::text[]) order by id', [runIds]);
  const sides: StageSide[] = [];
  const missing: string[] = [];
  for (const w of wanted) {
    const rows = res.rows.filter((r) => r.run_id === w.runId && (w.stageId === undefined || r.stage_id === w.stageId));
    if (rows.length === 0) missing.push(w.stageId ? `${w.runId}/${w.stageId}` : w.runId);
    for (const r of rows) {
      sides.push({
        runId: r.run_id,
        stageId: r.stage_id,
        kind: r.kind,
        status: r.status,
        origin: { runId: r.origin_run, stageId: r.origin_stage },
        axes: r.axes,
        groupId: r.group_id,
        seed: r.seed,
        params: r.plan.find((p) => p.id === r.stage_id)?.params ?? {},
        datasetId: r.output?.ref?.datasetId ?? null,
        datasetHash: r.dataset_hash,
        datasetName: r.dataset_name,
        metrics: metricRows.rows
          .filter((m) => m.run_id === r.run_id && m.stage_id === r.stage_id)
          .map((m) => ({ metric: m.metric, scope: m.scope, policy: m.policy, value: m.value, ciLow: m.ci_low, ciHigh: m.ci_high, n: m.n })),
      });
    }
  }
  return { sides, missing };
}

/** Item key → best candidate and category of an mc-items artifact. */
export async function loadItems(db: Db, artifactId: number): Promise<Map<string, { best: number; category: string }>> {
  const res = await db.$client.query<{ item_key: string; best: number; category: string }>(
    'select item_key, best, category from mc_items where artifact_id = $1',
    [artifactId],
  );
  return new Map(res.rows.map((r) => [r.item_key, { best: r.best, category: r.category }]));
}

/** Every judge sample of a stage (the origin stage of a reused one). */
export async function loadJudgments(db: Db, runId: string, stageId: string): Promise<JudgmentSample[]> {
  const res = await db.$client.query<{ item_key: string; view: number; sample: number; chosen_candidate: number | null; output_tokens: number | null }>(
    `select item_key, view, sample, case when status = 'parsed' then chosen_candidate end as chosen_candidate, output_tokens
     from judgments where run_id = $1 and stage_id = $2`,
    [runId, stageId],
  );
  return res.rows.map((r) => ({ itemKey: r.item_key, view: r.view, sample: r.sample, chosenCandidate: r.chosen_candidate, outputTokens: r.output_tokens }));
}
