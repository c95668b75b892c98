import { bigint, bigserial, boolean, customType, integer, jsonb, pgTable, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

const bytea = customType<{ data: Buffer; driverData: Buffer }>({ dataType: () => 'bytea' });

/** Content-addressed binary artifacts (images): key is the sha256 of the bytes. */
export const blobs = pgTable('blobs', {
  hash: text().primaryKey(),
  mime: text().notNull(),
  size: integer().notNull(),
  bytes: bytea().notNull(),
  createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
});

/**
 * Content-addressed inference cache. key = sha256 of (endpoint fingerprint, canonical messages with
 * image hashes, sampling params, seed, sample index). Only successful completions are stored.
 */
export const inferenceCache = pgTable('inference_cache', {
  key: text().primaryKey(),
  endpointFingerprint: text().notNull(),
  model: text().notNull(),
  content: text().notNull(),
  reasoning: text(),
  finishReason: text(),
  promptTokens: integer().notNull().default(0),
  completionTokens: integer().notNull().default(0),
  latencyMs: integer().notNull().default(0),
  createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
});

export const REQUEST_STATUSES = ['pending', 'succeeded', 'failed'] as const;
export type RequestStatus = (typeof REQUEST_STATUSES)[number];

/**
 * Request bodies, content-addressed: hash = sha256 of the canonical JSON of { messages, params }
 * (messages carry images as { type: 'image_ref', hash }). The k samples of one prompt, or the N of
 * a best-of-N, share one body.
 */
export const requestBodies = pgTable('request_bodies', {
  hash: text().primaryKey(),
  body: jsonb().notNull(),
  createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
});

/**
 * A prepared inference request of one stage, immutable once written; (run, stage, item_key) is
 * unique, so preparing again is idempotent. Its outcome is a row of `inference_results`: a request
 * without one is pending.
 */
export const inferenceRequests = pgTable(
  'inference_requests',
  {
    id: bigserial({ mode: 'number' }).primaryKey(),
    runId: text().notNull(),
    stageId: text().notNull(),
    itemKey: text().notNull(),
    endpoint: text().notNull(),
    sampleIndex: integer().notNull().default(0),
    bodyHash: text()
      .notNull()
      .references(() => requestBodies.hash),
    cacheKey: text(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('inference_requests_item_uq').on(t.runId, t.stageId, t.itemKey)],
);

/**
 * The outcome of one request. A succeeded result is final (the first writer wins: a late zombie
 * attempt changes nothing); a failed one is replaced when a resumed stage sends the request again.
 * Recording a result never rewrites the request row and its body.
 */
export const inferenceResults = pgTable('inference_results', {
  requestId: bigint({ mode: 'number' })
    .primaryKey()
    .references(() => inferenceRequests.id, { onDelete: 'cascade' }),
  /** 'succeeded' | 'failed' */
  status: text().$type<Exclude<RequestStatus, 'pending'>>().notNull(),
  errorClass: text(),
  error: text(),
  attempts: integer().notNull().default(0),
  cached: boolean().notNull().default(false),
  promptTokens: integer(),
  completionTokens: integer(),
  latencyMs: integer(),
  finishedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
});
