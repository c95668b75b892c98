import { bigserial, boolean, customType, index, integer, jsonb, pgTable, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

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

/** A prepared inference request of one stage; (run, stage, item_key) is unique, so writes are idempotent. */
export const inferenceRequests = pgTable(
  'inference_requests',
  {
    id: bigserial({ mode: 'number' }).primaryKey(),
    runId: text().notNull(),
    stageId: text().notNull(),
    itemKey: text().notNull(),
    endpoint: text().notNull(),
    sampleIndex: integer().notNull().default(0),
    /** { messages, params }: messages carry images as { type: 'image_ref', hash }. */
    request: jsonb().notNull(),
    cacheKey: text(),
    status: text().$type<RequestStatus>().notNull().default('pending'),
    errorClass: text(),
    error: text(),
    attempts: integer().notNull().default(0),
    cached: boolean(),
    promptTokens: integer(),
    completionTokens: integer(),
    latencyMs: integer(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    finishedAt: timestamp({ withTimezone: true }),
  },
  (t) => [
    uniqueIndex('inference_requests_item_uq').on(t.runId, t.stageId, t.itemKey),
    index('inference_requests_stage_status_idx').on(t.runId, t.stageId, t.status),
  ],
);
