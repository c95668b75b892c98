/**
 * What `judgeflow replay` launches: the source run's spec (as recorded, with its overrides, plus
 * the new `--set`s) as a new run whose stages upstream of the replayed one are taken from the
 * source run by reference (their outputs: artifact ids; lineage kept, nothing copied).
 */
import { eq, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { getStages } from '../db/queries.js';
import { experiments, runs } from '../db/schema/index.js';
import { copyMetrics } from '../activities/reuse.js';
import { endpointFingerprint } from '../activities/inference/cache-key.js';
import { canonicalJson } from '../spec/canonical.js';
import { loadSpec, runIdFor, type LoadedSpec } from '../spec/load.js';
import { dependentsOf } from '../workflows/dag.js';
import type { StagePlan } from '../workflows/types.js';
import { UsageError } from './errors.js';

/** Optional parts of a launch: a fixed run id, its group, its replay source and reused stages. */
export interface LaunchExtras {
  /** The run id (ablation groups, replays); default: from the experiment name, spec hash and label. */
  runId?: string;
  groupId?: string;
  axes?: Record<string, unknown>;
  replay?: { of: string; from: string };
  /** Stages taken from another run instead of running: stage id → the stage that has the output. */
  reused?: Record<string, { runId: string; stageId: string }>;
  /** Stage ids that must run even when an identical earlier stage exists (`reuse: false`). */
  noReuse?: string[];
}

type Tx = Pick<Db, 'execute'>;

/** Marks `reused` stages of a new run succeeded with the origin stage's output (following earlier reuse to the stage that ran). */
export async function seedReusedStages(tx: Tx, runId: string, reused: NonNullable<LaunchExtras['reused']>): Promise<void> {
  for (const [stageId, src] of Object.entries(reused)) {
    const res = await tx.execute<{
      run_id: string;
      stage_id: string;
      output: unknown;
      reuse_key: string | null;
      items_total: number;
      items_done: number;
      items_failed: number;
    }>(sql`
      select coalesce(reused_from_run, run_id) as run_id, coalesce(reused_from_stage, stage_id) as stage_id, output, reuse_key, items_total, items_done, items_failed
      from stages where run_id = ${src.runId} and stage_id = ${src.stageId} and status = 'succeeded'`);
    const origin = res.rows[0];
    if (!origin) throw new UsageError(`stage ${src.runId}/${src.stageId} has not succeeded: it cannot be reused`);
    await tx.execute(sql`
      update stages set status = 'succeeded', output = ${JSON.stringify(origin.output)}::jsonb, reuse_key = ${origin.reuse_key},
        reused_from_run = ${origin.run_id}, reused_from_stage = ${origin.stage_id},
        items_total = ${origin.items_total}, items_done = ${origin.items_done}, items_failed = ${origin.items_failed},
        started_at = now(), finished_at = now(), updated_at = now()
      where run_id = ${runId} and stage_id = ${stageId}`);
    await copyMetrics(tx, origin, { runId, stageId });
  }
}

/** What must be equal for an upstream stage of the source run to stand in for the new one. */
function stageIdentity(s: StagePlan): string {
  return canonicalJson({
    kind: s.kind,
    needs: s.needs,
    params: s.params,
    endpoints: Object.fromEntries(Object.entries(s.endpoints).map(([n, e]) => [n, endpointFingerprint(e)])),
    datasets: Object.keys(s.datasets).sort(),
  });
}

export interface ReplayPlan {
  loaded: LoadedSpec;
  extras: LaunchExtras & { runId: string };
  recomputed: string[];
}

/**
 * Plans a replay of `runId` from stage `from`. Refuses (UsageError, exit 2) a source run or stage
 * that does not exist, an upstream stage that did not succeed, a `--set` that changes an upstream
 * stage, and with `failedItems` a `--set` that changes the replayed stage.
 */
export async function planReplay(
  db: Db,
  opts: { runId: string; from: string; sets: string[]; label?: string; failedItems?: boolean; cwd?: string },
): Promise<ReplayPlan> {
  const [src] = await db
    .select({ run: runs, specText: experiments.specText, specPath: experiments.specPath, name: experiments.name })
    .from(runs)
    .innerJoin(experiments, eq(runs.experimentId, experiments.id))
    .where(eq(runs.id, opts.runId));
  if (!src) throw new UsageError(`no run "${opts.runId}"; \`judgeflow list\` shows the runs`);
  const srcStages = await getStages(db, opts.runId);
  const srcPlan = src.run.plan as StagePlan[];
  if (!srcPlan.some((s) => s.id === opts.from))
    throw new UsageError(`run ${opts.runId} has no stage "${opts.from}"; its stages: ${srcPlan.map((s) => s.id).join(', ')}`);
  const prior = Object.entries(src.run.overrides).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  const loaded = await loadSpec(src.specPath, { text: src.specText, sets: [...prior, ...opts.sets], withoutAblations: true, cwd: opts.cwd });
  const recomputed = [opts.from, ...dependentsOf(loaded.plan, opts.from)];
  const reused: Record<string, { runId: string; stageId: string }> = {};
  for (const stage of loaded.plan) {
    const old = srcPlan.find((s) => s.id === stage.id);
    const changed = !old || stageIdentity(old) !== stageIdentity(stage);
    if (recomputed.includes(stage.id)) {
      if (opts.failedItems && stage.id === opts.from && changed) {
        throw new UsageError(`--failed-items re-runs stage "${opts.from}" as it was; the --set flags change it (drop them, or replay without --failed-items)`);
      }
      continue;
    }
    const row = srcStages.find((s) => s.stageId === stage.id);
    if (row?.status !== 'succeeded') {
      throw new UsageError(
        `stage "${stage.id}" is upstream of "${opts.from}" but ${row ? row.status : 'absent'} in run ${opts.runId}: replay from it (\`judgeflow replay ${opts.runId} --from ${stage.id}\`)`,
      );
    }
    if (changed) throw new UsageError(`the --set flags change stage "${stage.id}", which is upstream of "${opts.from}": replay from "${stage.id}" instead`);
    reused[stage.id] = { runId: opts.runId, stageId: stage.id };
  }
  const label = opts.label ?? `replay-${opts.from}${opts.failedItems ? '-failed' : ''}`;
  let runId = runIdFor(loaded.spec.name, loaded.hash, label);
  if (src.run.groupId && opts.label === undefined) runId = `${opts.runId}-${label}`;
  if (runId === opts.runId) throw new UsageError(`the replay would have the source run's id ${runId}: pass another --label`);
  return {
    loaded,
    recomputed,
    extras: { runId, reused, noReuse: [opts.from], replay: { of: opts.runId, from: opts.from } },
  };
}
