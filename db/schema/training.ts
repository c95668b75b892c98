import { doublePrecision, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

/**
 * One submission of a `train` stage to its backend. `attempt` counts the stage's executions and,
 * within one, resubmissions after the backend lost the job; `job_key` derives from run, stage and
 * attempt (the backend looks it up before submitting). `job_id` is written before the stage waits.
 */
export const trainJobs = pgTable(
  'train_jobs',
  {
    runId: text().notNull(),
    stageId: text().notNull(),
    attempt: integer().notNull(),
    /** process | ray | slurm | openai */
    backend: text().notNull(),
    jobKey: text().notNull(),
    /** The backend's own id (pid folder, Ray submission id, Slurm job id, fine-tuning job id). */
    jobId: text(),
    /** submitted | pending | running | succeeded | failed | cancelled | lost | timed_out */
    state: text().notNull().default('submitted'),
    /** Whether the submission attached to a job the backend already had under this key. */
    attached: integer().notNull().default(0),
    /** Every state change: [{ state, at (ISO time), message? }]. */
    events: jsonb().$type<{ state: string; at: string; message?: string }[]>().notNull().default([]),
    /** The last lines of the job's log, refreshed while it runs. */
    logTail: text().notNull().default(''),
    /** Where the trainer writes the checkpoint folder and metrics.jsonl. */
    outputDir: text().notNull(),
    error: text(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ name: 'train_jobs_pk', columns: [t.runId, t.stageId, t.attempt] }), uniqueIndex('train_jobs_key_uq').on(t.jobKey)],
);

/** The trainer's metrics.jsonl, one row per logged step of one submission. */
export const trainMetrics = pgTable(
  'train_metrics',
  {
    runId: text().notNull(),
    stageId: text().notNull(),
    attempt: integer().notNull(),
    step: integer().notNull(),
    loss: doublePrecision(),
    /** The whole line as the trainer wrote it (learning rate, epoch, grad norm, …). */
    values: jsonb().$type<Record<string, unknown>>().notNull(),
  },
  (t) => [primaryKey({ name: 'train_metrics_pk', columns: [t.runId, t.stageId, t.attempt, t.step] })],
);
