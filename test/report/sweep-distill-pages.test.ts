/**
 * The report and the dashboard for sweep and distill stages in a real headless Chromium (Debian's,
 * driven by playwright-core): scaling curves (score vs N, vs cost), paired differences per N,
 * acceptance and rejection bars, each drawn with as many marks as the stored rows say; no console
 * errors; the report offline; screenshots in test-artifacts/.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import type { Browser } from 'playwright-core';
import { launchChromium, openPage, plotMarks, serveOnLoopback } from '../helpers/browser.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentProgress } from '../../cli/commands/status.js';
import type { Connected } from '../../cli/connect.js';
import type { DbHandle } from '../../db/client.js';
import { loadStageSides } from '../../db/compare.js';
import '../../spec/builtin.js';
import { createDashboardApp } from '../../web/dashboard.js';
import { renderReport } from '../../web/report.js';
import type { RunningWorker } from '../../worker.js';
import { REPO, openTestDb, startTestWorker, testClient, uniqueName } from '../helpers/env.js';
import { distillSpec, runGroup, startKindSims, sweepSpec, type KindSims } from '../helpers/kind-groups.js';

const ARTIFACTS = join(REPO, 'test-artifacts');
const TQ = uniqueName('kind-pages');
const SEED = 31;
let db: DbHandle;
let kinds: KindSims;
let worker: RunningWorker;
let client: Client;
let closeClient: () => Promise<void>;
let browser: Browser;
let server: { base: string; close(): Promise<void> } | undefined;
let base: string;
let sweep: { groupId: string; runs: string[] };
let distill: { groupId: string; runs: string[] };

const q = async <T extends Record<string, unknown>>(text: string, params: unknown[] = []) => (await db.pool.query<T>(text, params)).rows;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  db = await openTestDb();
  worker = await startTestWorker(TQ);
  ({ client, close: closeClient } = await testClient());
  kinds = await startKindSims({ db, client, taskQueue: TQ, seed: SEED, distillItems: 40 });
  sweep = await runGroup({
    spec: sweepSpec(kinds.sim, { name: uniqueName('pages-sweep'), seed: SEED, questions: 30 }),
    axis: { name: 'judge', path: 'stages.bon.with.judge', values: ['judge', 'judge-biased'] },
    db,
    client,
    taskQueue: TQ,
  });
  distill = await runGroup({
    spec: distillSpec(kinds, { name: uniqueName('pages-distill'), seed: SEED, items: 40 }),
    axis: { name: 'hint', path: 'stages.distill.with.hint', values: [false, true] },
    db,
    client,
    taskQueue: TQ,
  });
  browser = await launchChromium();
  const conn = { client, db } as unknown as Connected;
  const app = createDashboardApp({ db: db.db, progress: (runId) => currentProgress(conn, runId) });
  server = await serveOnLoopback(app.fetch);
  base = server.base;
}, 900_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await worker?.shutdown();
  await closeClient?.();
  await kinds?.close();
  await db?.close();
});

/** Points of a sweep run's stored curve (capability total). */
async function curvePoints(runId: string): Promise<number> {
  return (
    await q<{ n: number }>(
      "select count(*)::int as n from curve_points p join artifacts a on a.id = p.artifact_id where a.run_id = $1 and a.stage_id = 'bon' and p.capability = 'total'",
      [runId],
    )
  )[0]!.n;
}

/** A distill run's error types and rejection reasons, from its attempts. */
async function distillShape(runId: string): Promise<{ types: string[]; reasons: string[] }> {
  const types = await q<{ t: string }>(
    "select distinct jsonb_array_elements_text(error_types) as t from distill_attempts where run_id = $1 and stage_id = 'distill' order by 1",
    [runId],
  );
  const reasons = await q<{ status: string }>(
    "select distinct status from distill_attempts where run_id = $1 and stage_id = 'distill' and status <> 'accepted' order by 1",
    [runId],
  );
  return { types: types.map((r) => r.t), reasons: reasons.map((r) => r.status) };
}

describe('the HTML report over a sweep group and a distill group', () => {
  it('draws the scaling curves, the paired differences per N and the acceptance bars, offline, with no console errors', async () => {
    const { sides } = await loadStageSides(
      db.db,
      [...sweep.runs, ...distill.runs].map((runId) => ({ runId })),
    );
    const { html, plots } = await renderReport(db.db, sides, { title: 'sweep and distill' });
    const file = join(ARTIFACTS, 'report-sweep-distill.html');
    writeFileSync(file, html);
    expect(html).not.toMatch(/<script[^>]+src=/);
    const { page, errors, requests } = await openPage(browser, `file://${file}`, { offline: true });
    const marks = await plotMarks(page);

    const [p0, p1] = [await curvePoints(sweep.runs[0]!), await curvePoints(sweep.runs[1]!)];
    expect(p0).toBe(p1);
    const [da, db_] = [await distillShape(distill.runs[0]!), await distillShape(distill.runs[1]!)];
    expect(da.types).toEqual(db_.types);
    expect(da.types.length).toBeGreaterThan(0);
    const reasons = [...new Set([...da.reasons, ...db_.reasons])];
    expect(plots).toBe(7);
    expect(marks.map((m) => m.title.split(':')[0])).toEqual([
      'Best-of-N',
      'Best-of-N',
      'Best-of-N',
      'Negatives kept per error type (% of requested)',
      'Distill',
      'Distill',
      'Distillation',
    ]);
    expect(marks.map((m) => m.expected)).toEqual([
      // score vs N and vs cost: a point per (stage, strategy, N); B − A per (strategy, N).
      p0 + p1,
      p0 + p1,
      p0,
      // The synthesize stage both distill runs reused: 2 stages × 3 error types.
      6,
      // Items accepted, at attempt 1, per error type; traces accepted and per reason; the differences.
      2 * (2 + da.types.length),
      2 * (1 + reasons.length),
      2 + da.types.length + 1 + reasons.length,
    ]);
    for (const m of marks) expect(m.drawn, m.title).toBe(m.expected);
    expect(errors).toEqual([]);
    expect(requests.filter((u) => !u.startsWith('file:'))).toEqual([]);
    const body = await page.textContent('body');
    expect(body).toContain('Best-of-N scaling curves');
    expect(body).toContain('Distillation acceptance');
    await page.screenshot({ path: join(ARTIFACTS, 'report-sweep-distill.png'), fullPage: true });
    await page.close();
  });
});

describe('the dashboard', () => {
  it('a sweep group page draws both curves and the paired differences', async () => {
    const { page, errors } = await openPage(browser, `${base}/groups/${encodeURIComponent(sweep.groupId)}`);
    const marks = await plotMarks(page);
    const p = await curvePoints(sweep.runs[0]!);
    expect(marks.map((m) => m.expected)).toEqual([2 * p, 2 * p, p]);
    for (const m of marks) expect(m.drawn, m.title).toBe(m.expected);
    expect(errors).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-sweep-group.png'), fullPage: true });
    await page.close();
  });

  it('a distill run page draws its acceptance bars; the compare page of two distill stages adds the differences', async () => {
    const shape = await distillShape(distill.runs[1]!);
    const run = await openPage(browser, `${base}/runs/${encodeURIComponent(distill.runs[1]!)}`);
    const runMarks = await plotMarks(run.page);
    expect(runMarks.map((m) => m.expected)).toEqual([3, 2 + shape.types.length, 1 + shape.reasons.length]);
    for (const m of runMarks) expect(m.drawn, m.title).toBe(m.expected);
    expect(run.errors).toEqual([]);
    await run.page.screenshot({ path: join(ARTIFACTS, 'dashboard-distill-run.png'), fullPage: true });
    await run.page.close();

    const other = await distillShape(distill.runs[0]!);
    const reasons = [...new Set([...shape.reasons, ...other.reasons])];
    const cmp = await openPage(
      browser,
      `${base}/compare?ref=${encodeURIComponent(`${distill.runs[0]}/distill`)}&ref=${encodeURIComponent(`${distill.runs[1]}/distill`)}`,
    );
    const cmpMarks = await plotMarks(cmp.page);
    expect(cmpMarks.map((m) => m.expected)).toEqual([2 * (2 + shape.types.length), 2 * (1 + reasons.length), 2 + shape.types.length + 1 + reasons.length]);
    for (const m of cmpMarks) expect(m.drawn, m.title).toBe(m.expected);
    expect(cmp.errors).toEqual([]);
    expect(await cmp.page.textContent('body')).toContain('Distillation: differences B − A');
    await cmp.page.screenshot({ path: join(ARTIFACTS, 'dashboard-distill-compare.png'), fullPage: true });
    await cmp.page.close();
  });
});
