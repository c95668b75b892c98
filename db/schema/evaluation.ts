import { doublePrecision, index, integer, jsonb, pgTable, primaryKey, serial, text, timestamp, uniqueIndex, bigint } from 'drizzle-orm/pg-core';

/** One judge sample on one view (candidate order) of one item. */
export const judgments = pgTable(
  'judgments',
  {
    runId: text().notNull(),
    stageId: text().notNull(),
    itemKey: text().notNull(),
    view: integer().notNull(),
    sample: integer().notNull(),
    requestId: bigint({ mode: 'number' }),
    /** permutation[p] = index of the candidate shown at position p. */
    permutation: jsonb().$type<number[]>().notNull(),
    /** 'parsed' | 'unparseable' | 'failed' (the request itself failed). */
    status: text().notNull(),
    chosenPosition: integer(),
    chosenCandidate: integer(),
    correct: integer(),
    outputTokens: integer(),
    latencyMs: integer(),
  },
  (t) => [primaryKey({ name: 'judgments_pk', columns: [t.runId, t.stageId, t.itemKey, t.view, t.sample] })],
);

/** A computed metric of a stage; policy names the rule for unparseable outputs where it matters. */
export const metrics = pgTable(
  'metrics',
  {
    id: serial().primaryKey(),
    runId: text().notNull(),
    stageId: text().notNull(),
    metric: text().notNull(),
    scope: text().notNull(),
    policy: text().notNull().default(''),
    value: doublePrecision().notNull(),
    ciLow: doublePrecision(),
    ciHigh: doublePrecision(),
    n: integer().notNull().default(0),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('metrics_uq').on(t.runId, t.stageId, t.metric, t.scope, t.policy), index('metrics_run_idx').on(t.runId)],
);
