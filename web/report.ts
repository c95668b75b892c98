/** `judgeflow report`: one self-contained HTML file (no network at view time) over runs or a group. */
import type { Db } from '../db/client.js';
import type { StageSide } from '../db/compare.js';
import { esc, renderPage, renderSections, renderTable } from './page.js';
import { buildSections } from './sections.js';

export async function renderReport(db: Db, sides: StageSide[], opts: { title: string; generatedAt?: Date }): Promise<{ html: string; plots: number }> {
  const sections = await buildSections(db, sides);
  const { html, plots } = renderSections(sections);
  const runs = [...new Set(sides.map((s) => s.runId))];
  const stages = renderTable({
    headers: ['run', 'stage', 'kind', 'status', 'axes', 'reused from'],
    rows: sides.map((s) => [
      s.runId,
      s.stageId,
      s.kind,
      s.status,
      s.axes
        ? Object.entries(s.axes)
            .map(([k, v]) => `${k}=${String(v)}`)
            .join(' ')
        : '',
      s.origin.runId !== s.runId || s.origin.stageId !== s.stageId ? `${s.origin.runId}/${s.origin.stageId}` : '',
    ]),
  });
  const header = `<h1>${esc(opts.title)}</h1><p class="note">${runs.length} run(s), generated ${esc((opts.generatedAt ?? new Date()).toISOString())} by judgeflow.</p><section><h2>Stages</h2>${stages}</section>`;
  return { html: renderPage({ title: opts.title, header, body: html, plots }), plots: plots.length };
}
