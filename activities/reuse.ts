/**
 * Stage reuse across the runs of one experiment (relabelled runs, replays, ablation groups). A
 * stage's reuse key is the sha256 of what determines its result: the experiment name, stage id, kind and kind version, params, seed, the endpoints it calls (fingerprint: URL, model, revision) and
 * its inputs (dataset artifact ids, upstream stages' artifact ids). Before a stage runs, the
 * experiment workflow claims its key:
 * - an earlier stage with that key succeeded with no failed items → this stage takes its output
 *   (artifact ids: by reference, nothing copied; its metrics rows are copied under this stage so
 *   results read alike) and records where it came from;
 * - a stage with that key is running in another running run → wait and claim again (an ablation
 *   grid's shared upstream stage runs once);
 * - otherwise this stage runs, holding the key.
 * The claim runs under a transaction-scoped advisory lock on the key, so two runs never both run.
 */
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { canonicalJson, sha256Hex } from '../spec/canonical.js';
import type { StageOutput, StagePlan } from '../workflows/types.js';
import { endpointFingerprint } from './inference/cache-key.js';

export interface ClaimStageInput {
  runId: string;
  seed: number;
  stage: StagePlan;
  /** Outputs of the stages it needs, by id. */
  inputs: Record<string, StageOutput>;
}
export type ClaimStageOutput =
  | { action: 'run'; reuseKey: string }
  | { action: 'wait'; holder: string }
  | { action: 'reused'; from: { runId: string; stageId: string }; output: StageOutput };

/** The reuse key of a stage about to run (see the module comment). */
export function reuseKeyOf({ experiment, seed, stage, inputs }: Omit<ClaimStageInput, 'runId'> & { experiment: string }): string {
  return sha256Hex(
    canonicalJson({
      experiment,
      // The same stage of the experiment: two stages of one run never stand in for each other.
      stage: stage.id,
      kind: stage.kind,
      version: stage.version ?? 1,
      params: stage.params,
      seed,
      endpoints: Object.fromEntries(Object.entries(stage.endpoints).map(([n, e]) => [n, endpointFingerprint(e)])),
      // A dataset is its imported artifact; plans from before artifacts name the file and its options.
      datasets: Object.fromEntries(Object.entries(stage.datasets).map(([n, d]) => [n, d.artifactId ?? { ...d, name: undefined }])),
      inputs: Object.fromEntries(Object.entries(inputs).map(([id, o]) => [id, o.artifacts ?? o.ref])),
    }),
  );
}

export function createReuseActivities({ db }: { db: Db }) {
  return {
    async claimStage(input: ClaimStageInput): Promise<ClaimStageOutput> {
      const { runId, stage } = input;
      const named = await db.execute<{ name: string }>(sql`select e.name from runs r join experiments e on e.id = r.experiment_id where r.id = ${runId}`);
      const key = reuseKeyOf({ ...input, experiment: named.rows[0]?.name ?? '' });
      return db.transaction(async (tx) => {
        await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${key}, 0))`);
        const done = await tx.execute<{ run_id: string; stage_id: string; output: StageOutput; items_total: number; items_done: number }>(sql`
          select run_id, stage_id, output, items_total, items_done from stages
          where reuse_key = ${key} and status = 'succeeded' and reused_from_run is null and items_failed = 0 and output is not null
            and not (run_id = ${runId} and stage_id = ${stage.id})
          order by finished_at limit 1`);
        const origin = done.rows[0];
        if (origin) {
          await tx.execute(sql`
            update stages set status = 'succeeded', output = ${JSON.stringify(origin.output)}::jsonb, error = null, reuse_key = ${key},
              reused_from_run = ${origin.run_id}, reused_from_stage = ${origin.stage_id},
              items_total = ${origin.items_total}, items_done = ${origin.items_done}, items_failed = 0,
              started_at = now(), finished_at = now(), updated_at = now()
            where run_id = ${runId} and stage_id = ${stage.id}`);
          await copyMetrics(tx, origin, { runId, stageId: stage.id });
          return { action: 'reused', from: { runId: origin.run_id, stageId: origin.stage_id }, output: origin.output };
        }
        const running = await tx.execute<{ run_id: string; stage_id: string }>(sql`
          select s.run_id, s.stage_id from stages s join runs r on r.id = s.run_id
          where s.reuse_key = ${key} and s.status = 'running' and r.status = 'running' and not (s.run_id = ${runId} and s.stage_id = ${stage.id})
          limit 1`);
        if (running.rows[0]) return { action: 'wait', holder: `${running.rows[0].run_id}/${running.rows[0].stage_id}` };
        await tx.execute(sql`
          update stages set reuse_key = ${key}, reused_from_run = null, reused_from_stage = null, status = 'running',
            attempts = attempts + 1, started_at = now(), finished_at = null, error = null, updated_at = now()
          where run_id = ${runId} and stage_id = ${stage.id}`);
        return { action: 'run', reuseKey: key };
      });
    },
  };
}

/** The origin stage's metrics under the reusing stage (small rows; per-item judgments stay with the origin). */
export async function copyMetrics(tx: Pick<Db, 'execute'>, from: { run_id: string; stage_id: string }, to: { runId: string; stageId: string }): Promise<void> {
  await tx.execute(sql`
    insert into metrics (run_id, stage_id, metric, scope, policy, value, ci_low, ci_high, n)
    select ${to.runId}, ${to.stageId}, metric, scope, policy, value, ci_low, ci_high, n from metrics
    where run_id = ${from.run_id} and stage_id = ${from.stage_id}
    on conflict (run_id, stage_id, metric, scope, policy) do nothing`);
}

export type ReuseActivities = ReturnType<typeof createReuseActivities>;
