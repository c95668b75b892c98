import { sql } from 'drizzle-orm';
import { index, integer, jsonb, pgTable, primaryKey, serial, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

/** A named experiment at one spec version: the same name with a changed spec is a new row. */
export const experiments = pgTable(
  'experiments',
  {
    id: serial().primaryKey(),
    name: text().notNull(),
    description: text().notNull().default(''),
    specHash: text().notNull(),
    /** The spec after overrides, as canonical JSON: what the run actually executed. */
    specJson: jsonb().notNull(),
    /** The spec file's text as the user wrote it (before overrides). */
    specText: text().notNull(),
    specPath: text().notNull(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('experiments_name_hash_uq').on(t.name, t.specHash)],
);

export const RUN_STATUSES = ['pending', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

/** One launch of an experiment; its id is the Temporal workflow id. */
export const runs = pgTable(
  'runs',
  {
    id: text().primaryKey(),
    experimentId: integer()
      .notNull()
      .references(() => experiments.id),
    label: text().notNull().default(''),
    status: text().$type<RunStatus>().notNull().default('pending'),
    overrides: jsonb().$type<Record<string, unknown>>().notNull().default({}),
    codeVersion: text(),
    seed: integer().notNull().default(0),
    /** The resolved stage plan (workflows/types.ts StagePlan[]): what the engine executes. */
    plan: jsonb().$type<unknown[]>().notNull(),
    /** Temporal run id of the current workflow execution. */
    workflowRunId: text(),
    /** How many workflow executions this run has had (a failed run launched again resumes). */
    executions: integer().notNull().default(0),
    error: text(),
    /** The ablation group this run belongs to (`ablations:` in its spec), or null. */
    groupId: text(),
    /** This combination's axis values within its group, e.g. { judge: "a", negatives: 2 }. */
    axes: jsonb().$type<Record<string, unknown>>(),
    /** The run this one replays (`judgeflow replay`), and the stage it recomputes from. */
    replayOf: text(),
    replayFrom: text(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    startedAt: timestamp({ withTimezone: true }),
    finishedAt: timestamp({ withTimezone: true }),
  },
  (t) => [index('runs_experiment_idx').on(t.experimentId), index('runs_created_idx').on(t.createdAt), index('runs_group_idx').on(t.groupId)],
);

export const STAGE_STATUSES = ['pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled'] as const;
export type StageStatus = (typeof STAGE_STATUSES)[number];

export const stages = pgTable(
  'stages',
  {
    runId: text()
      .notNull()
      .references(() => runs.id, { onDelete: 'cascade' }),
    stageId: text().notNull(),
    kind: text().notNull(),
    needs: jsonb()
      .$type<string[]>()
      .notNull()
      .default(sql`'[]'::jsonb`),
    status: text().$type<StageStatus>().notNull().default('pending'),
    attempts: integer().notNull().default(0),
    itemsTotal: integer().notNull().default(0),
    itemsDone: integer().notNull().default(0),
    itemsFailed: integer().notNull().default(0),
    /** References (ids) the stage produced, handed to the stages that need it. */
    output: jsonb().$type<Record<string, unknown>>(),
    error: text(),
    /**
     * sha256 of what determines the stage's result (kind, kind version, params, seed, endpoints,
     * input artifact ids): a later stage with the same key reuses this one's artifacts.
     */
    reuseKey: text(),
    /** Set when the stage reused another run's stage instead of running: the stage that ran. */
    reusedFromRun: text(),
    reusedFromStage: text(),
    startedAt: timestamp({ withTimezone: true }),
    finishedAt: timestamp({ withTimezone: true }),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ name: 'stages_pk', columns: [t.runId, t.stageId] }), index('stages_reuse_key_idx').on(t.reuseKey)],
);
