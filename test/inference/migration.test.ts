/**
 * Upgrading a database written by 0000 (requests with their outcome inline) to 0001 (request
 * bodies content-addressed, outcomes in inference_results): nothing is lost, pending stays pending.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDb, type DbHandle } from '../../db/client.js';
import { applyMigrations, MIGRATIONS_FOLDER } from '../../db/migrate.js';
import { loadPendingRows, loadResults, stageUsage } from '../../activities/inference/store.js';
import { requireEnv, uniqueId } from './helpers.js';

let adminUrl: URL;
let dbName: string;
let handle: DbHandle;
let oldFolder: string;

beforeAll(async () => {
  adminUrl = new URL(requireEnv('JF_TEST_DATABASE_URL'));
  dbName = uniqueId('jf_mig').replace(/-/g, '_');
  const admin = new pg.Client({ connectionString: adminUrl.href });
  await admin.connect();
  await admin.query(`create database "${dbName}"`);
  await admin.end();
  const url = new URL(adminUrl.href);
  url.pathname = `/${dbName}`;
  handle = openDb(url.href);
  // A migrations folder as it was at 0000.
  oldFolder = mkdtempSync(join(tmpdir(), 'jf-mig-'));
  cpSync(MIGRATIONS_FOLDER, oldFolder, { recursive: true });
  const journal = JSON.parse(readFileSync(join(oldFolder, 'meta', '_journal.json'), 'utf8')) as { entries: { tag: string }[] };
  journal.entries = journal.entries.filter((e) => e.tag === '0000_init');
  writeFileSync(join(oldFolder, 'meta', '_journal.json'), JSON.stringify(journal));
});

afterAll(async () => {
  await handle?.close();
  rmSync(oldFolder, { recursive: true, force: true });
  const admin = new pg.Client({ connectionString: adminUrl.href });
  await admin.connect();
  await admin.query(`drop database if exists "${dbName}" with (force)`);
  await admin.end();
});

describe('migration 0001', () => {
  it('moves bodies and outcomes out of inference_requests, keeping every row', async () => {
    await applyMigrations(handle.db, oldFolder);
    const q = (sql: string, values?: unknown[]) => handle.db.$client.query(sql, values);
    const body = { messages: [{ role: 'user', content: 'which is best?' }], params: { temperature: 0, max_tokens: 8 } };
    await q(`insert into inference_cache (key, endpoint_fingerprint, model, content, prompt_tokens, completion_tokens) values ('k0', 'fp', 'm', 'B', 10, 3)`);
    await q(
      `insert into inference_requests (run_id, stage_id, item_key, endpoint, sample_index, request, cache_key, status, error_class, error, attempts, cached, prompt_tokens, completion_tokens, latency_ms, finished_at)
       values ('r', 's', 'a#0', 'ep', 0, $1, 'k0', 'succeeded', null, null, 1, false, 10, 3, 42, now()),
              ('r', 's', 'a#1', 'ep', 1, $1, 'k1', 'failed', 'item:bad_request', 'HTTP 400', 1, false, null, null, null, now()),
              ('r', 's', 'b#0', 'ep', 0, $2, 'k2', 'pending', null, null, 0, null, null, null, null, null)`,
      [JSON.stringify(body), JSON.stringify({ ...body, params: { temperature: 1 } })],
    );

    await applyMigrations(handle.db);

    const bodies = await q('select count(*)::int as n from request_bodies');
    expect(bodies.rows[0].n).toBe(2); // the two samples of item a share one body
    const rows = await loadResults(handle.db, 'r', 's');
    expect(rows.map((r) => [r.itemKey, r.status, r.errorClass, r.attempts, r.content, r.latencyMs])).toEqual([
      ['a#0', 'succeeded', null, 1, 'B', 42],
      ['a#1', 'failed', 'item:bad_request', 1, null, null],
      ['b#0', 'pending', null, 0, null, null],
    ]);
    const pending = await loadPendingRows(handle.db, { runId: 'r', stageId: 's', endpointName: 'ep', afterId: 0, toId: 1e9, limit: 10 });
    expect(pending.map((p) => [p.itemKey, p.request.params.temperature])).toEqual([['b#0', 1]]);
    const usage = await stageUsage(handle.db, 'r', 's');
    expect(usage).toMatchObject({ requests: 3, succeeded: 1, failed: 1, pending: 1, promptTokens: 10, completionTokens: 3 });
  });
});
