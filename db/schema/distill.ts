import { bigint, boolean, index, integer, jsonb, pgTable, primaryKey, text, uniqueIndex } from 'drizzle-orm/pg-core';
import { artifacts } from './artifacts.js';

/**
 * One reasoning attempt of `distill` on one item: the requests it made (caption, reasoning, each
 * rewrite pass), its fate (`accepted` or a rejection reason) and, when accepted, the final trace
 * and its hash. Attempt n used sample index n. The reject/retry loop resumes from these rows.
 */
export const distillAttempts = pgTable(
  'distill_attempts',
  {
    runId: text().notNull(),
    stageId: text().notNull(),
    /** The mc-items item key. */
    itemKey: text().notNull(),
    attempt: integer().notNull(),
    /** `accepted` | wrong_choice | unparseable | rewrite_changed_choice | hint_leaked | over_length | request_failed. */
    status: text().notNull(),
    hint: boolean().notNull(),
    /** The parsed choice of the reasoning (0-based), null when unparseable or failed. */
    choice: integer(),
    best: integer().notNull(),
    /** The trace after the last rewrite that ran (empty when the request failed). */
    trace: text().notNull(),
    traceHash: text(),
    /** Completion tokens of the reasoning. */
    traceTokens: integer().notNull().default(0),
    /** inference_requests ids: { caption, reason, rewrites: { <pass>: id } }. */
    requests: jsonb().$type<{ caption: number | null; reason: number; rewrites: Record<string, number> }>().notNull(),
    /** Error types of the item's negatives (from the mc-items meta), for per-type acceptance. */
    errorTypes: jsonb().$type<string[]>().notNull().default([]),
  },
  (t) => [
    primaryKey({ name: 'distill_attempts_pk', columns: [t.runId, t.stageId, t.itemKey, t.attempt] }),
    index('distill_attempts_status_idx').on(t.runId, t.stageId, t.status),
  ],
);

/**
 * A row of an `sft-set` artifact: the judge's prompt (image + text) and its answer (an accepted
 * trace in the judge's answer format). `idx` is dense once sealed.
 */
export const sftRows = pgTable(
  'sft_rows',
  {
    artifactId: integer()
      .notNull()
      .references(() => artifacts.id, { onDelete: 'cascade' }),
    idx: integer().notNull(),
    itemKey: text().notNull(),
    imageHash: text(),
    prompt: text().notNull(),
    response: text().notNull(),
    /** The right option's label. */
    answer: text().notNull(),
    split: text().notNull(),
    traceHash: text().notNull(),
    attempt: integer().notNull(),
    /** The mc-items artifact the item came from. */
    sourceArtifactId: integer().notNull(),
    reasonRequestId: bigint({ mode: 'number' }),
  },
  (t) => [primaryKey({ name: 'sft_rows_pk', columns: [t.artifactId, t.idx] }), uniqueIndex('sft_rows_key_uq').on(t.artifactId, t.itemKey)],
);

/** A row of an `rl-set` artifact: a question with options, its image and the verifiable answer label. */
export const rlRows = pgTable(
  'rl_rows',
  {
    artifactId: integer()
      .notNull()
      .references(() => artifacts.id, { onDelete: 'cascade' }),
    idx: integer().notNull(),
    itemKey: text().notNull(),
    imageHash: text(),
    /** The judge's prompt (question and labelled options). */
    prompt: text().notNull(),
    question: text().notNull(),
    options: jsonb().$type<string[]>().notNull(),
    answer: text().notNull(),
    split: text().notNull(),
    sourceArtifactId: integer().notNull(),
  },
  (t) => [primaryKey({ name: 'rl_rows_pk', columns: [t.artifactId, t.idx] }), uniqueIndex('rl_rows_key_uq').on(t.artifactId, t.itemKey)],
);
