import { and, eq, inArray, ne, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { runs, stages, type StageStatus } from '../db/schema/index.js';
import type { RunPlan, StageOutput, StagePlan } from '../workflows/types.js';
import { ApplicationFailure } from '@temporalio/common';

export interface BeginRunInput {
  runId: string;
  workflowRunId: string;
}
export interface MarkStageRunningInput {
  runId: string;
  stageId: string;
}
export interface FinishStageInput {
  runId: string;
  stageId: string;
  status: Extract<StageStatus, 'succeeded' | 'failed' | 'cancelled'>;
  output?: StageOutput;
  error?: string;
}
export interface SkipStagesInput {
  runId: string;
  stageIds: string[];
  reason: string;
  /** Which current statuses may be overwritten (default: pending only). */
  from?: StageStatus[];
}
export interface FinishRunInput {
  runId: string;
  status: 'succeeded' | 'failed' | 'cancelled';
  error?: string;
}

/**
 * Run and stage bookkeeping. Every write is idempotent: an activity retried after a crash
 * (or replayed by a new worker) leaves the same rows as a single execution.
 */
export function createRecordActivities({ db }: { db: Db }) {
  return {
    async beginRun({ runId, workflowRunId }: BeginRunInput): Promise<RunPlan> {
      return db.transaction(async (tx) => {
        const [run] = await tx.select().from(runs).where(eq(runs.id, runId)).for('update');
        if (!run) throw ApplicationFailure.nonRetryable(`run ${runId} has no row in Postgres; launch it with \`judgeflow run\``, 'RunNotFound');
        if (run.workflowRunId !== workflowRunId) {
          // A new execution of this run (first launch, or a relaunch after failure): everything
          // that did not succeed starts again from pending; succeeded stages keep their outputs.
          await tx
            .update(runs)
            .set({
              status: 'running',
              workflowRunId,
              executions: sql`${runs.executions} + 1`,
              startedAt: sql`coalesce(${runs.startedAt}, now())`,
              finishedAt: null,
              error: null,
            })
            .where(eq(runs.id, runId));
          await tx
            .update(stages)
            .set({ status: 'pending', error: null, finishedAt: null, updatedAt: sql`now()` })
            .where(and(eq(stages.runId, runId), ne(stages.status, 'succeeded')));
        }
        const rows = await tx.select().from(stages).where(eq(stages.runId, runId));
        const succeeded: Record<string, StageOutput> = {};
        for (const r of rows) if (r.status === 'succeeded') succeeded[r.stageId] = (r.output ?? { ref: {} }) as unknown as StageOutput;
        return { runId, seed: run.seed, stages: run.plan as StagePlan[], succeeded };
      });
    },

    async markStageRunning({ runId, stageId }: MarkStageRunningInput): Promise<void> {
      await db
        .update(stages)
        .set({ status: 'running', attempts: sql`${stages.attempts} + 1`, startedAt: sql`now()`, finishedAt: null, error: null, updatedAt: sql`now()` })
        .where(and(eq(stages.runId, runId), eq(stages.stageId, stageId), ne(stages.status, 'running')));
    },

    async finishStage({ runId, stageId, status, output, error }: FinishStageInput): Promise<void> {
      await db
        .update(stages)
        .set({
          status,
          output: (output as unknown as Record<string, unknown>) ?? null,
          error: error ?? null,
          itemsTotal: output?.items?.total ?? stages.itemsTotal,
          itemsDone: output?.items?.done ?? stages.itemsDone,
          itemsFailed: output?.items?.failed ?? stages.itemsFailed,
          finishedAt: sql`now()`,
          updatedAt: sql`now()`,
        })
        .where(and(eq(stages.runId, runId), eq(stages.stageId, stageId)));
    },

    async skipStages({ runId, stageIds, reason, from }: SkipStagesInput): Promise<void> {
      if (stageIds.length === 0) return;
      await db
        .update(stages)
        .set({ status: 'skipped', error: reason, finishedAt: sql`now()`, updatedAt: sql`now()` })
        .where(and(eq(stages.runId, runId), inArray(stages.stageId, stageIds), inArray(stages.status, from ?? ['pending'])));
    },

    async cancelStages({ runId }: { runId: string }): Promise<void> {
      await db
        .update(stages)
        .set({ status: 'cancelled', finishedAt: sql`now()`, updatedAt: sql`now()` })
        .where(and(eq(stages.runId, runId), inArray(stages.status, ['pending', 'running'])));
    },

    async updateStageItems({
      runId,
      stageId,
      done,
      total,
      failed,
    }: {
      runId: string;
      stageId: string;
      done: number;
      total: number;
      failed: number;
    }): Promise<void> {
      await db
        .update(stages)
        .set({ itemsDone: done, itemsTotal: total, itemsFailed: failed, updatedAt: sql`now()` })
        .where(and(eq(stages.runId, runId), eq(stages.stageId, stageId)));
    },

    async finishRun({ runId, status, error }: FinishRunInput): Promise<void> {
      await db
        .update(runs)
        .set({ status, error: error ?? null, finishedAt: sql`now()` })
        .where(eq(runs.id, runId));
    },
  };
}

export type RecordActivities = ReturnType<typeof createRecordActivities>;
