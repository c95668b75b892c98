/**
 * The report and the dashboard in a real headless Chromium (Debian's, driven by playwright-core):
 * no console errors, every plot drawn with the right number of marks, no network for the report,
 * a screenshot of each page in test-artifacts/ (gitignored).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import type { Browser } from 'playwright-core';
import { launchChromium, openPage, plotMarks, serveOnLoopback } from '../helpers/browser.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planGroup } from '../../cli/ablation-group.js';
import { currentProgress } from '../../cli/commands/status.js';
import type { Connected } from '../../cli/connect.js';
import { launchRun } from '../../cli/launch.js';
import type { DbHandle } from '../../db/client.js';
import { loadStageSides } from '../../db/compare.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { createDashboardApp } from '../../web/dashboard.js';
import { renderReport } from '../../web/report.js';
import type { RunningWorker } from '../../worker.js';
import { REPO, openTestDb, startTestWorker, testClient, uniqueName } from '../helpers/env.js';
import { specFromObject } from '../helpers/spec.js';
import { runCli } from '../helpers/cli.js';

const ARTIFACTS = join(REPO, 'test-artifacts');
const DATA = `${REPO}/data/vl-rewardbench/data.jsonl`;
const TQ = uniqueName('pages');
let db: DbHandle;
let sim: SimHandle;
let worker: RunningWorker;
let client: Client;
let closeClient: () => Promise<void>;
let browser: Browser;
let server: { base: string; close(): Promise<void> } | undefined;
let base: string;
let groupId: string;
let groupRunIds: string[];

function spec(name: string) {
  return {
    name,
    seed: 3,
    endpoints: {
      judge: { base_url: sim.url, model: 'judge', concurrency: 32 },
      'judge-first': { base_url: sim.url, model: 'judge-first', concurrency: 32 },
      'judge-slow': { base_url: sim.url, model: 'judge-slow', concurrency: 1 },
    },
    datasets: { vlrb: { path: DATA, limit: 60 } },
    stages: [{ id: 'eval', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge', positions: 'swap', bootstrap: 200 } as Record<string, unknown> }],
  };
}

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  db = await openTestDb();
  sim = await startSimulator({
    seed: 2,
    truth: DATA,
    models: {
      judge: { behaviour: 'judge', accuracy: 0.8 },
      'judge-first': { behaviour: 'judge', first_bias: 1 },
      'judge-slow': { behaviour: 'judge', accuracy: 0.8, latency: { kind: 'fixed', ms: 200 } },
    },
  });
  worker = await startTestWorker(TQ);
  ({ client, close: closeClient } = await testClient());
  // A group of two judges on the same items.
  const loaded = await specFromObject({
    ...spec(uniqueName('pages')),
    ablations: { axes: { judge: { path: 'stages.eval.with.judge', values: ['judge', 'judge-first'] } } },
  });
  const group = await planGroup(loaded, { sets: [] });
  groupId = group.groupId;
  groupRunIds = [];
  for (const m of group.members) {
    const { runId } = await launchRun({ loaded: m.loaded, db: db.db, client, taskQueue: TQ, runId: m.runId, groupId, axes: m.axes });
    groupRunIds.push(runId);
  }
  for (const id of groupRunIds) await client.workflow.getHandle(id).result();
  browser = await launchChromium();
  const conn = { client, db } as unknown as Connected;
  const app = createDashboardApp({
    db: db.db,
    progress: (runId) => currentProgress(conn, runId),
    workflowUrl: (id) => `http://127.0.0.1:8233/namespaces/default/workflows/${encodeURIComponent(id)}`,
  });
  server = await serveOnLoopback(app.fetch);
  base = server.base;
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await worker?.shutdown();
  await closeClient?.();
  await sim?.close();
  await db?.close();
});

/** Categories of the evaluated items (the first 60 VL-RewardBench records). */
async function categories(): Promise<number> {
  const r = await db.pool.query<{ n: number }>(
    "select count(distinct scope)::int as n from metrics where run_id = $1 and metric = 'accuracy' and scope like 'category:%'",
    [groupRunIds[0]],
  );
  return r.rows[0]!.n;
}

describe('the HTML report', () => {
  it('opens offline with every plot drawn and no console errors', async () => {
    const { sides } = await loadStageSides(
      db.db,
      groupRunIds.map((runId) => ({ runId })),
    );
    const { html, plots } = await renderReport(db.db, sides, { title: 'test report' });
    const file = join(ARTIFACTS, 'report.html');
    writeFileSync(file, html);
    expect(html).not.toMatch(/<script[^>]+src=/);
    const { page, errors, requests } = await openPage(browser, `file://${file}`, { offline: true });
    const marks = await plotMarks(page);
    // Accuracy by category, position bias, tokens, paired difference.
    expect(plots).toBe(4);
    expect(marks).toHaveLength(4);
    // 2 judges × (overall, macro, each category) bars; 2 bars; 2 bars; 1 paired point.
    expect(marks.map((m) => m.expected)).toEqual([2 * (2 + (await categories())), 2, 2, 1]);
    for (const m of marks) expect(m.drawn, m.id).toBe(m.expected);
    expect(errors).toEqual([]);
    expect(requests.filter((u) => !u.startsWith('file:'))).toEqual([]);
    expect(await page.textContent('body')).toContain('Paired comparison on shared items');
    await page.screenshot({ path: join(ARTIFACTS, 'report.png'), fullPage: true });
    await page.close();
  });
});

describe('the dashboard', () => {
  it('refuses a non-loopback bind without --allow-remote (exit 2, nothing served)', async () => {
    const res = await runCli(['dashboard', '--host', '0.0.0.0', '--port', '0']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/--host 0\.0\.0\.0 is not a loopback address: .* add --allow-remote/);
  });

  it('lists 100 more runs (time printed) without console errors', async () => {
    const exp = (
      await db.pool.query<{ id: number }>(
        `insert into experiments (name, spec_hash, spec_json, spec_text, spec_path) values ($1, $2, '{}', '', '/x.yaml') returning id`,
        [uniqueName('many'), uniqueName('hash')],
      )
    ).rows[0]!.id;
    const prefix = uniqueName('listed');
    await db.pool.query(`insert into runs (id, experiment_id, status, plan) select $1 || '-' || g, $2, 'succeeded', '[]' from generate_series(1, 100) g`, [
      prefix,
      exp,
    ]);
    const started = performance.now();
    const { page, errors } = await openPage(browser, `${base}/`);
    await page.waitForSelector('#runs');
    const ms = performance.now() - started;
    const listed = await page.$$eval('#runs tbody tr td:first-child', (tds) => tds.map((td) => td.textContent ?? ''));
    console.log(`dashboard: front page with ${listed.length} runs loaded in ${ms.toFixed(0)} ms`);
    expect(listed.filter((id) => id.startsWith(`${prefix}-`))).toHaveLength(100);
    for (const id of groupRunIds) expect(listed).toContain(id);
    await page.waitForFunction(() => ((window as unknown as { liveUpdates?: number }).liveUpdates ?? 0) >= 1);
    expect(errors).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-runs.png') });
    await page.close();
  });

  it('a running run that no worker serves: the live poll still answers within seconds, with its Postgres progress', async () => {
    // Launched on a queue nobody polls: Temporal holds its progress query until a worker comes.
    const loaded = await specFromObject(spec(uniqueName('no-worker')));
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: uniqueName('nobody-polls'), runId: undefined });
    try {
      await db.pool.query(`update runs set status = 'running' where id = $1`, [runId]);
      // Before, this request waited on Temporal for as long as no worker came (past the test's timeout).
      const res = await fetch(`${base}/api/runs`);
      expect(res.status).toBe(200);
      const { rows } = (await res.json()) as { rows: { key: string; status: string; progress: string }[] };
      expect(rows.find((r) => r.key === runId)).toEqual({ key: runId, status: 'running', progress: '0/1 stages' });
    } finally {
      await client.workflow.getHandle(runId).terminate('test over');
    }
  });

  it('a group page compares its runs with plots drawn; a run page links stages to the Temporal Web UI', async () => {
    const groups = await openPage(browser, `${base}/groups`);
    expect(await groups.page.getAttribute(`a[href="/groups/${encodeURIComponent(groupId)}"]`, 'href')).toBe(`/groups/${encodeURIComponent(groupId)}`);
    expect(groups.errors).toEqual([]);
    await groups.page.close();
    const { page, errors } = await openPage(browser, `${base}/groups/${encodeURIComponent(groupId)}`);
    const marks = await plotMarks(page);
    expect(marks.map((m) => m.expected)).toEqual([2 * (2 + (await categories())), 2, 2, 1]);
    for (const m of marks) expect(m.drawn, m.id).toBe(m.expected);
    expect(errors).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-group.png'), fullPage: true });
    await page.close();

    const run = await openPage(browser, `${base}/runs/${encodeURIComponent(groupRunIds[0]!)}`);
    const href = await run.page.getAttribute('#stages a', 'href');
    expect(href).toBe(`http://127.0.0.1:8233/namespaces/default/workflows/${encodeURIComponent(`${groupRunIds[0]}/eval`)}`);
    const runMarks = await plotMarks(run.page);
    expect(runMarks.map((m) => m.expected)).toEqual([2 + (await categories()), 1, 1]);
    for (const m of runMarks) expect(m.drawn, m.id).toBe(m.expected);
    expect(run.errors).toEqual([]);
    await run.page.screenshot({ path: join(ARTIFACTS, 'dashboard-run.png'), fullPage: true });
    await run.page.close();
  });

  it('follows a live run: the stage progress grows and the status turns succeeded', async () => {
    const s = spec(uniqueName('live'));
    // Small chunks: the stage reports progress as each chunk is judged.
    s.stages[0]!.with = { dataset: 'vlrb', judge: 'judge-slow', positions: 'none', bootstrap: 0, chunk_size: 4, parallel: 1 };
    s.datasets.vlrb.limit = 40;
    // A revision nobody used: nothing comes from the cache, every request takes the simulator's latency.
    (s.endpoints['judge-slow'] as Record<string, unknown>).revision = uniqueName('rev');
    const { runId } = await launchRun({ loaded: await specFromObject(s), db: db.db, client, taskQueue: TQ });
    const { page, errors } = await openPage(browser, `${base}/runs/${encodeURIComponent(runId)}`);
    const seen = new Set<string>();
    const cell = '[data-progress="eval"]';
    await page
      .waitForFunction(
        (sel) => {
          const t = document.querySelector(sel)?.textContent ?? '';
          const m = /^(\d+)\/(\d+)/.exec(t);
          return m !== null && Number(m[1]) > 0 && Number(m[1]) < Number(m[2]);
        },
        cell,
        { timeout: 60_000 },
      )
      .catch(async (err: unknown) => {
        throw new Error(`${String(err)}; page: ${await page.innerText('body')}; errors: ${errors.join(' | ')}`);
      });
    seen.add((await page.textContent(cell)) ?? '');
    await page.waitForFunction(() => document.querySelector('[data-status="eval"]')?.textContent === 'succeeded', undefined, { timeout: 60_000 });
    seen.add((await page.textContent(cell)) ?? '');
    expect(seen.size).toBe(2);
    expect(await page.textContent(cell)).toBe('40/40');
    expect(errors).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-live.png') });
    await page.close();
  });
});
