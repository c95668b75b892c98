import { bigint, doublePrecision, integer, jsonb, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';
import { artifacts } from './artifacts.js';

/**
 * One answer of a `sweep` stage's pool: per (question, sample index) the policy request that wrote
 * it, the final answer read from it (normalized) and the grader's score in [0, 1].
 */
export const sweepSamples = pgTable(
  'sweep_samples',
  {
    runId: text().notNull(),
    stageId: text().notNull(),
    /** The question's item key in its qa-items artifact. */
    itemKey: text().notNull(),
    sample: integer().notNull(),
    requestId: bigint({ mode: 'number' }).notNull(),
    /** The normalized final answer ('' when none could be read or the request failed). */
    answer: text().notNull(),
    grade: doublePrecision().notNull(),
    /** LLM grader: per run, the score or null (0.0 after the last unreadable attempt), and the attempts made. */
    gradeDetail: jsonb().$type<{ runs: (number | null)[]; attempts: number[] }>(),
  },
  (t) => [primaryKey({ name: 'sweep_samples_pk', columns: [t.runId, t.stageId, t.itemKey, t.sample] })],
);

/** What a strategy picked for one question, N and replicate (0: the first N samples), and the judge requests it used. */
export const sweepSelections = pgTable(
  'sweep_selections',
  {
    runId: text().notNull(),
    stageId: text().notNull(),
    itemKey: text().notNull(),
    strategy: text().notNull(),
    n: integer().notNull(),
    replicate: integer().notNull(),
    sample: integer().notNull(),
    /** The judge requests' keys (`mc:3,0,7`, `score:5`): item keys `<question>|j|<key>` of the stage. */
    calls: jsonb().$type<string[]>().notNull(),
  },
  (t) => [primaryKey({ name: 'sweep_selections_pk', columns: [t.runId, t.stageId, t.itemKey, t.strategy, t.n, t.replicate] })],
);

/** A point of a `curve` artifact: score vs N per strategy and capability (`total` for all questions), with its cost. */
export const curvePoints = pgTable(
  'curve_points',
  {
    artifactId: integer()
      .notNull()
      .references(() => artifacts.id, { onDelete: 'cascade' }),
    strategy: text().notNull(),
    n: integer().notNull(),
    capability: text().notNull(),
    questions: integer().notNull(),
    /** Mean grade ×100 and its 95% bootstrap interval over questions. */
    score: doublePrecision().notNull(),
    ciLow: doublePrecision(),
    ciHigh: doublePrecision(),
    /** One best-of-N run over these questions (means over replicates): policy samples, judge calls, tokens, USD. */
    policySamples: integer().notNull(),
    judgeCalls: doublePrecision().notNull(),
    tokens: doublePrecision().notNull(),
    costUsd: doublePrecision().notNull(),
  },
  (t) => [primaryKey({ name: 'curve_points_pk', columns: [t.artifactId, t.strategy, t.n, t.capability] })],
);
