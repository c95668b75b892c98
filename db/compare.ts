/** What `judgeflow compare`, the report and the dashboard read of stages (evaluate, sweep, distill). */
import type { Db } from './client.js';
import type { JudgmentSample } from '../activities/compare/stats.js';
import type { CurvePoint } from '../activities/sweep/curve.js';

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
  /** The stage output's references (artifact ids, counts); {} before it finished. */
  ref: Record<string, unknown>;
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
    output: { ref?: { datasetId?: number } & Record<string, unknown> } | null;
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
        ref: r.output?.ref ?? {},
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

/** An artifact's name, content hash and row count (the source a sweep or distill stage read). */
export async function loadArtifactInfo(db: Db, id: number): Promise<{ id: number; name: string; hash: string | null; rows: number } | undefined> {
  const res = await db.$client.query<{ id: number; name: string; content_hash: string | null; rows: number }>(
    'select id, name, content_hash, rows from artifacts where id = $1',
    [id],
  );
  const r = res.rows[0];
  return r ? { id: r.id, name: r.name, hash: r.content_hash, rows: r.rows } : undefined;
}

/** Item keys of a qa-items or mc-items artifact in order, the first `limit` of them. */
export async function loadItemKeys(db: Db, table: 'qa_items' | 'mc_items', artifactId: number, limit: number): Promise<string[]> {
  const res = await db.$client.query<{ item_key: string }>(`select item_key from ${table} where artifact_id = $1 and idx < $2 order by idx`, [
    artifactId,
    limit,
  ]);
  return res.rows.map((r) => r.item_key);
}

/** A sweep stage's selections with the grade of the answer each picked (the origin stage of a reused one). */
export async function loadSweepSelections(
  db: Db,
  runId: string,
  stageId: string,
): Promise<{ itemKey: string; strategy: string; n: number; replicate: number; grade: number }[]> {
  // Two index scans joined here: a join in SQL can get a nested loop over the whole stage (tens of seconds on fresh statistics).
  const grades = await db.$client.query<{ item_key: string; sample: number; grade: number }>(
    'select item_key, sample, grade from sweep_samples where run_id = $1 and stage_id = $2',
    [runId, stageId],
  );
  const grade = new Map(grades.rows.map((r) => [`${r.item_key}#${r.sample}`, r.grade]));
  const res = await db.$client.query<{ item_key: string; strategy: string; n: number; replicate: number; sample: number }>(
    'select item_key, strategy, n, replicate, sample from sweep_selections where run_id = $1 and stage_id = $2',
    [runId, stageId],
  );
  return res.rows.map((r) => ({
    itemKey: r.item_key,
    strategy: r.strategy,
    n: r.n,
    replicate: r.replicate,
    grade: grade.get(`${r.item_key}#${r.sample}`) ?? 0,
  }));
}

/** The points of a curve artifact. */
export async function loadCurvePoints(db: Db, artifactId: number): Promise<CurvePointRow[]> {
  const res = await db.$client.query<{
    strategy: string;
    n: number;
    capability: string;
    questions: number;
    score: number;
    ci_low: number | null;
    ci_high: number | null;
    policy_samples: number;
    judge_calls: number;
    tokens: number;
    cost_usd: number;
  }>('select * from curve_points where artifact_id = $1 order by strategy, n, capability', [artifactId]);
  return res.rows.map((r) => ({
    strategy: r.strategy,
    n: r.n,
    capability: r.capability,
    questions: r.questions,
    score: r.score,
    ciLow: r.ci_low,
    ciHigh: r.ci_high,
    policySamples: r.policy_samples,
    judgeCalls: r.judge_calls,
    tokens: r.tokens,
    costUsd: r.cost_usd,
  }));
}

/** A stored point of a sweep curve (`curve_points`). */
export type CurvePointRow = CurvePoint;

/** A distill stage's attempts: per item and attempt, its fate and the item's error types. */
export async function loadDistillAttempts(
  db: Db,
  runId: string,
  stageId: string,
): Promise<{ itemKey: string; attempt: number; status: string; errorTypes: string[] }[]> {
  const res = await db.$client.query<{ item_key: string; attempt: number; status: string; error_types: string[] }>(
    'select item_key, attempt, status, error_types from distill_attempts where run_id = $1 and stage_id = $2 order by item_key, attempt',
    [runId, stageId],
  );
  return res.rows.map((r) => ({ itemKey: r.item_key, attempt: r.attempt, status: r.status, errorTypes: r.error_types }));
}
