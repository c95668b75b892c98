/**
 * `judgeflow dashboard`: a local web app over Postgres (Hono). Pages: runs, groups and
 * experiments (live progress), a run's stages (live progress, Temporal Web UI links, results,
 * plots), a group (its runs and their comparison), a comparison of any stages. JSON under /api.
 */
import { Hono } from 'hono';
import type { Db } from '../db/client.js';
import { loadStageSides, type StageSide } from '../db/compare.js';
import { groupRuns, listGroups } from '../db/groups.js';
import { getRun, listRuns } from '../db/queries.js';
import type { RunProgress } from '../workflows/types.js';
import { esc, renderPage, renderSections, renderTable } from './page.js';
import { buildSections } from './sections.js';

export interface DashboardDeps {
  db: Db;
  /** A run's progress: live from its workflow while it runs, else from Postgres. */
  progress(runId: string): Promise<RunProgress>;
  /** The Temporal Web UI page of a workflow id, when the UI is known. */
  workflowUrl?(workflowId: string): string | undefined;
  /** Runs listed on the front page (default 500). */
  runLimit?: number;
}

const nav = `<p><a href="/">runs</a> · <a href="/groups">groups</a> · <a href="/experiments">experiments</a></p>`;

/** The client side of live pages: polls a JSON endpoint every second and redraws the marked cells. */
const LIVE_SCRIPT = `<script>
function fmtProgress(s){ return s.total > 0 ? s.done + '/' + s.total + (s.failed ? ' (' + s.failed + ' failed)' : '') : ''; }
async function poll(){
  try {
    const res = await fetch(window.liveUrl);
    const data = await res.json();
    window.liveUpdates = (window.liveUpdates || 0) + 1;
    for (const row of data.rows) {
      const st = document.querySelector('[data-status="' + CSS.escape(row.key) + '"]');
      if (st) { st.textContent = row.status; st.className = 'status-' + row.status; }
      const pr = document.querySelector('[data-progress="' + CSS.escape(row.key) + '"]');
      if (pr) pr.textContent = row.progress;
    }
  } catch (e) { console.warn('poll failed', e); }
  setTimeout(poll, 1000);
}
if (window.liveUrl) setTimeout(poll, 1000);
</script>`;

function runsTable(rows: { id: string; experiment: string; label: string; status: string; group?: string | null; createdAt: Date }[]): string {
  return `<table id="runs"><thead><tr><th>run</th><th>experiment</th><th>label</th><th>group</th><th>status</th><th>progress</th><th>created</th></tr></thead><tbody>${rows
    .map(
      (r) =>
        `<tr><td><a href="/runs/${encodeURIComponent(r.id)}">${esc(r.id)}</a></td><td>${esc(r.experiment)}</td><td>${esc(r.label)}</td><td>${r.group ? `<a href="/groups/${encodeURIComponent(r.group)}">${esc(r.group)}</a>` : ''}</td><td class="status-${esc(r.status)}" data-status="${esc(r.id)}">${esc(r.status)}</td><td data-progress="${esc(r.id)}"></td><td>${esc(r.createdAt.toISOString().replace('T', ' ').slice(0, 19))}</td></tr>`,
    )
    .join('')}</tbody></table>`;
}

export function createDashboardApp(deps: DashboardDeps): Hono {
  const app = new Hono();
  const { db } = deps;

  app.onError((err, c) => c.text(`judgeflow dashboard: ${err.message}`, 500));
  app.get('/favicon.ico', (c) => c.body(null, 204));

  const sectionsPage = async (title: string, header: string, sides: StageSide[], live?: string) => {
    const { html, plots } = renderSections(await buildSections(db, sides));
    return renderPage({
      title,
      header: nav + header,
      body: html,
      plots,
      extraScript: live ? `<script>window.liveUrl=${JSON.stringify(live)};</script>${LIVE_SCRIPT}` : undefined,
    });
  };

  app.get('/', async (c) => {
    const rows = await db.$client.query<{ id: string; experiment: string; label: string; status: string; group_id: string | null; created_at: Date }>(
      `select r.id, e.name as experiment, r.label, r.status, r.group_id, r.created_at from runs r join experiments e on e.id = r.experiment_id order by r.created_at desc limit $1`,
      [deps.runLimit ?? 500],
    );
    const table = runsTable(
      rows.rows.map((r) => ({ id: r.id, experiment: r.experiment, label: r.label, status: r.status, group: r.group_id, createdAt: r.created_at })),
    );
    return c.html(
      renderPage({
        title: 'judgeflow: runs',
        header: `<h1>Runs</h1>${nav}<p class="note">${rows.rows.length} runs, newest first; progress updates live.</p>`,
        body: table,
        plots: [],
        extraScript: `<script>window.liveUrl='/api/runs';</script>${LIVE_SCRIPT}`,
      }),
    );
  });

  app.get('/groups', async (c) => {
    const groups = await listGroups(db, 200);
    const body = renderTable(
      {
        headers: ['group', 'experiment', 'runs', 'succeeded', 'failed', 'running', 'created'],
        rows: groups.map((g) => [
          `<a href="/groups/${encodeURIComponent(g.groupId)}">${esc(g.groupId)}</a>`,
          g.experiment,
          g.runs,
          g.succeeded,
          g.failed,
          g.running,
          g.createdAt.toISOString().slice(0, 19),
        ]),
      },
      { rawColumns: [0] },
    );
    return c.html(renderPage({ title: 'judgeflow: groups', header: `<h1>Ablation groups</h1>${nav}`, body, plots: [] }));
  });

  app.get('/experiments', async (c) => {
    const res = await db.$client.query<{ name: string; versions: number; runs: number; last: Date }>(
      `select e.name, count(distinct e.id)::int as versions, count(r.id)::int as runs, max(r.created_at) as last from experiments e left join runs r on r.experiment_id = e.id group by e.name order by max(r.created_at) desc nulls last`,
    );
    const body = renderTable({
      headers: ['experiment', 'spec versions', 'runs', 'last run'],
      rows: res.rows.map((r) => [r.name, r.versions, r.runs, r.last ? r.last.toISOString().slice(0, 19) : '']),
    });
    return c.html(renderPage({ title: 'judgeflow: experiments', header: `<h1>Experiments</h1>${nav}`, body, plots: [] }));
  });

  app.get('/runs/:id', async (c) => {
    const runId = c.req.param('id');
    const run = await getRun(db, runId);
    if (!run) return c.html(renderPage({ title: 'not found', header: `${nav}<p>no run ${esc(runId)}</p>`, body: '', plots: [] }), 404);
    const progress = await deps.progress(runId);
    const ui = deps.workflowUrl?.(runId);
    const stages = `<table id="stages"><thead><tr><th>stage</th><th>kind</th><th>status</th><th>progress</th><th>note</th><th>Temporal</th></tr></thead><tbody>${progress.stages
      .map((s) => {
        const url = deps.workflowUrl?.(`${runId}/${s.id}`);
        return `<tr><td>${esc(s.id)}</td><td>${esc(s.kind)}</td><td class="status-${esc(s.status)}" data-status="${esc(s.id)}">${esc(s.status)}</td><td data-progress="${esc(s.id)}">${s.total > 0 ? `${s.done}/${s.total}` : ''}</td><td>${esc(s.error ?? (s.reusedFrom ? `reused from ${s.reusedFrom}` : ''))}</td><td>${url ? `<a href="${esc(url)}">workflow</a>` : ''}</td></tr>`;
      })
      .join('')}</tbody></table>`;
    const { sides } = await loadStageSides(db, [{ runId }]);
    const header = `<h1>Run ${esc(runId)}</h1><p>experiment ${esc(run.experiment.name)} · status <span class="status-${esc(run.run.status)}" data-status="__run">${esc(run.run.status)}</span>${ui ? ` · <a href="${esc(ui)}">Temporal Web UI</a>` : ''}${run.run.groupId ? ` · group <a href="/groups/${encodeURIComponent(run.run.groupId)}">${esc(run.run.groupId)}</a>` : ''}${run.run.replayOf ? ` · replay of <a href="/runs/${encodeURIComponent(run.run.replayOf)}">${esc(run.run.replayOf)}</a> from ${esc(run.run.replayFrom)}` : ''}</p>${stages}${run.run.error ? `<p class="note">error: ${esc(run.run.error)}</p>` : ''}`;
    return c.html(await sectionsPage(`judgeflow: ${runId}`, header, sides, `/api/runs/${encodeURIComponent(runId)}`));
  });

  app.get('/groups/:id', async (c) => {
    const groupId = c.req.param('id');
    const runs = await groupRuns(db, groupId);
    if (runs.length === 0) return c.html(renderPage({ title: 'not found', header: `${nav}<p>no group ${esc(groupId)}</p>`, body: '', plots: [] }), 404);
    const axes = [...new Set(runs.flatMap((r) => Object.keys(r.axes ?? {})))];
    const table = `<table id="runs"><thead><tr><th>run</th>${axes.map((a) => `<th>${esc(a)}</th>`).join('')}<th>status</th><th>progress</th></tr></thead><tbody>${runs
      .map(
        (r) =>
          `<tr><td><a href="/runs/${encodeURIComponent(r.id)}">${esc(r.id)}</a></td>${axes.map((a) => `<td>${esc(r.axes?.[a])}</td>`).join('')}<td class="status-${esc(r.status)}" data-status="${esc(r.id)}">${esc(r.status)}</td><td data-progress="${esc(r.id)}"></td></tr>`,
      )
      .join('')}</tbody></table>`;
    const { sides } = await loadStageSides(
      db,
      runs.map((r) => ({ runId: r.id })),
    );
    return c.html(
      await sectionsPage(`judgeflow: group ${groupId}`, `<h1>Group ${esc(groupId)}</h1>${table}`, sides, `/api/groups/${encodeURIComponent(groupId)}`),
    );
  });

  app.get('/compare', async (c) => {
    const refs = c.req.queries('ref') ?? [];
    const { sides, missing } = await loadStageSides(
      db,
      refs.map((r) => (r.includes('/') ? { runId: r.slice(0, r.indexOf('/')), stageId: r.slice(r.indexOf('/') + 1) } : { runId: r })),
    );
    const header = `<h1>Compare</h1><p>${refs.map((r) => esc(r)).join(' · ')}</p>${missing.length ? `<p class="note">not found: ${esc(missing.join(', '))}</p>` : ''}`;
    return c.html(await sectionsPage('judgeflow: compare', header, sides));
  });

  const runRows = async (ids: { id: string; status: string }[]) =>
    Promise.all(
      ids.map(async (r) => {
        if (r.status !== 'running') return { key: r.id, status: r.status, progress: '' };
        // One run whose progress cannot be read (Temporal away) leaves the others' rows intact.
        const p = await deps.progress(r.id).catch(() => undefined);
        if (!p) return { key: r.id, status: r.status, progress: '' };
        const done = p.stages.reduce((s, x) => s + x.done, 0);
        const total = p.stages.reduce((s, x) => s + x.total, 0);
        const stagesDone = p.stages.filter((x) => x.status === 'succeeded').length;
        return { key: r.id, status: p.status, progress: `${stagesDone}/${p.stages.length} stages${total > 0 ? `, ${done}/${total} requests` : ''}` };
      }),
    );

  app.get('/api/runs', async (c) => {
    const rows = await listRuns(db, deps.runLimit ?? 500);
    return c.json({ rows: await runRows(rows) });
  });
  app.get('/api/groups/:id', async (c) => c.json({ rows: await runRows(await groupRuns(db, c.req.param('id'))) }));
  app.get('/api/runs/:id', async (c) => {
    const p = await deps.progress(c.req.param('id'));
    return c.json({
      progress: p,
      rows: [
        { key: '__run', status: p.status, progress: '' },
        ...p.stages.map((s) => ({
          key: s.id,
          status: s.status,
          progress: s.total > 0 ? `${s.done}/${s.total}${s.failed ? ` (${s.failed} failed)` : ''}` : '',
        })),
      ],
    });
  });
  return app;
}

/** Loopback addresses the dashboard binds without --allow-remote. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
