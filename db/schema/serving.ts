import { integer, jsonb, pgTable, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';

/**
 * The server of a `serve` stage: where it listens now (dependents read `base_url` at the start of
 * each activity, so a server restarted on another worker is found at its new port), the process
 * that runs it, and every state change. `attempt` counts (re)starts.
 */
export const servers = pgTable(
  'servers',
  {
    runId: text().notNull(),
    stageId: text().notNull(),
    /** The stage's `endpoint` artifact (its parent: the checkpoint, when it serves one). */
    artifactId: integer().notNull(),
    /** starting | ready | restarting | stopped | failed | external */
    state: text().notNull().default('starting'),
    /** The model id requests name. */
    model: text().notNull(),
    /** What the cache keys on instead of the URL: the checkpoint's (or folder's) digest. */
    identity: text().notNull(),
    baseUrl: text(),
    host: text(),
    port: integer(),
    pid: integer(),
    /** Starts so far (1 = the first). */
    attempt: integer().notNull().default(0),
    /** The argv as run (placeholders filled). */
    command: jsonb().$type<string[]>(),
    logPath: text(),
    logTail: text().notNull().default(''),
    /** Every state change: [{ state, at (ISO time), message? }]. */
    events: jsonb().$type<{ state: string; at: string; message?: string }[]>().notNull().default([]),
    error: text(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    stoppedAt: timestamp({ withTimezone: true }),
  },
  (t) => [primaryKey({ name: 'servers_pk', columns: [t.runId, t.stageId] })],
);
