import { sql } from 'drizzle-orm';
import { bigint, doublePrecision, index, integer, jsonb, pgTable, primaryKey, serial, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

/**
 * An artifact: an immutable output handed between stages (multiple-choice items, QA items, SFT/RL
 * sets, checkpoints, curves). Its producer is a stage of a run (`run_id`, `stage_id`, `name`) or an
 * imported file (`source` and the hash of its bytes and images). Rows live in a table per kind
 * (`qa_items`, `mc_items`, …); images live once in `blobs`.
 */
export const artifacts = pgTable(
  'artifacts',
  {
    id: serial().primaryKey(),
    /** spec/artifacts.ts ARTIFACT_KINDS: mc-items | qa-items | sft-set | rl-set | checkpoint | curve | endpoint. */
    kind: text().notNull(),
    /** The artifact's name within its producer (`items`), or the dataset's name for an import. */
    name: text().notNull(),
    /** Producer: a stage of a run, or null for an imported file. */
    runId: text(),
    stageId: text(),
    /** The imported file (absolute path at import time) and its format; null for stage outputs. */
    source: text(),
    format: text(),
    /** sha256 (hex) of the content: file bytes + images for an import, the rows for a stage output. Empty until sealed. */
    contentHash: text().notNull().default(''),
    rows: integer().notNull().default(0),
    /** Counts a user reads: skipped rows by reason, per-error-type synthesis stats, … */
    summary: jsonb().$type<Record<string, unknown>>().notNull().default({}),
    /** Skipped source rows [{ line, reason }] (imports). */
    issues: jsonb().$type<{ line: number; reason: string }[]>().notNull().default([]),
    /** Set when every row is written: a stage output is usable downstream only once sealed. */
    sealedAt: timestamp({ withTimezone: true }),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('artifacts_producer_uq').on(t.runId, t.stageId, t.name),
    uniqueIndex('artifacts_import_uq')
      .on(t.kind, t.format, t.contentHash)
      .where(sql`run_id is null`),
    index('artifacts_run_idx').on(t.runId),
  ],
);

/** Lineage: the artifacts an artifact was made from. */
export const artifactParents = pgTable(
  'artifact_parents',
  {
    artifactId: integer()
      .notNull()
      .references(() => artifacts.id, { onDelete: 'cascade' }),
    parentId: integer()
      .notNull()
      .references(() => artifacts.id),
  },
  (t) => [primaryKey({ name: 'artifact_parents_pk', columns: [t.artifactId, t.parentId] })],
);

/** A question about an image with its reference answer (an SFT source row). */
export const qaItems = pgTable(
  'qa_items',
  {
    artifactId: integer()
      .notNull()
      .references(() => artifacts.id, { onDelete: 'cascade' }),
    idx: integer().notNull(),
    itemKey: text().notNull(),
    question: text().notNull(),
    answer: text().notNull(),
    imageHash: text(),
    /** 1-based line (JSONL), record (JSON) or row (parquet) of the source file. */
    sourceLine: integer(),
    meta: jsonb().$type<Record<string, unknown>>().notNull().default({}),
  },
  (t) => [primaryKey({ name: 'qa_items_pk', columns: [t.artifactId, t.idx] }), uniqueIndex('qa_items_key_uq').on(t.artifactId, t.itemKey)],
);

/**
 * A multiple-choice judge item: a query, an optional image and K candidates, one of them the best.
 * `idx` is dense (0..rows-1) once the artifact is sealed; a synthesized item also names its source
 * QA item and, per candidate, the request that wrote it (null: the reference answer).
 */
export const mcItems = pgTable(
  'mc_items',
  {
    artifactId: integer()
      .notNull()
      .references(() => artifacts.id, { onDelete: 'cascade' }),
    itemKey: text().notNull(),
    idx: integer(),
    query: text().notNull(),
    imageHash: text(),
    candidates: jsonb().$type<string[]>().notNull(),
    best: integer().notNull(),
    category: text().notNull().default(''),
    subset: text().notNull().default(''),
    meta: jsonb().$type<Record<string, unknown>>().notNull().default({}),
    /** Order before sealing: the source row's index. */
    sourceIdx: integer().notNull(),
    /** 1-based line of an imported file. */
    sourceLine: integer(),
    /** Synthesized items: the qa-items parent's item key, and per candidate the inference_requests id (null = reference). */
    sourceItemKey: text(),
    candidateRequests: jsonb().$type<(number | null)[]>(),
  },
  (t) => [primaryKey({ name: 'mc_items_pk', columns: [t.artifactId, t.itemKey] }), uniqueIndex('mc_items_idx_uq').on(t.artifactId, t.idx)],
);

/**
 * One requested negative of `synthesize`: per (item, error type, sample) the request that wrote it
 * and its fate: `kept`, or the filter that rejected it (`empty`, `overlong`, `near_identical`,
 * `duplicate`, `refusal`), or `request_failed`.
 */
export const negatives = pgTable(
  'negatives',
  {
    runId: text().notNull(),
    stageId: text().notNull(),
    itemKey: text().notNull(),
    errorType: text().notNull(),
    sample: integer().notNull(),
    requestId: bigint({ mode: 'number' }).notNull(),
    endpoint: text().notNull(),
    model: text().notNull(),
    status: text().notNull(),
    /** Normalized edit distance to the reference (null when not computed). */
    distance: doublePrecision(),
  },
  (t) => [primaryKey({ name: 'negatives_pk', columns: [t.runId, t.stageId, t.itemKey, t.errorType, t.sample] })],
);
