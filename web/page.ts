/** HTML of report and dashboard pages: tables, notes and Vega-Lite plots, with the plotting library inline. */
import { plotScripts } from './assets.js';
import type { Section, Table } from './sections.js';

export function esc(s: unknown): string {
  return String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function renderTable(t: Table, opts: { rawColumns?: number[] } = {}): string {
  const cell = (v: string | number, i: number) => `<td>${opts.rawColumns?.includes(i) ? String(v) : esc(v)}</td>`;
  return `<table><thead><tr>${t.headers.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${t.rows.map((r) => `<tr>${r.map(cell).join('')}</tr>`).join('')}</tbody></table>`;
}

/** Sections as HTML; plots are `<div class="plot">` filled by `drawPlots()` (see `plotBootstrap`). */
export function renderSections(sections: Section[], plotIdPrefix = 'plot'): { html: string; plots: { id: string; spec: unknown }[] } {
  const plots: { id: string; spec: unknown }[] = [];
  const html = sections
    .map((s) => {
      const charts = s.charts
        .map((c) => {
          const id = `${plotIdPrefix}-${plots.length}`;
          plots.push({ id, spec: c.spec });
          return `<figure><figcaption>${esc(c.title)}</figcaption><div class="plot" id="${id}" data-marks="${c.marks}" data-mark-type="${c.markType}"></div></figure>`;
        })
        .join('');
      return `<section><h2>${esc(s.title)}</h2>${s.notes.map((n) => `<p class="note">${esc(n)}</p>`).join('')}${s.tables.map((t) => renderTable(t)).join('')}<div class="plots">${charts}</div></section>`;
    })
    .join('\n');
  return { html, plots };
}

/** JSON for a `<script>` block: "</" cannot end the block early. */
export function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, '\\u003c');
}

export const STYLE = `<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;white-space:nowrap}
th{background:#f4f4f4}.note{color:#555;margin:4px 0}.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:16px}
figure{margin:0}figcaption{font-weight:600;margin:6px 0}.plot{width:100%}a{color:#0b5cad}
.status-succeeded{color:#18794e}.status-failed,.status-cancelled{color:#b42318}.status-running{color:#0b5cad}
</style>`;

/** The drawing script: every plot rendered as SVG, `window.plotsDrawn` set when all are done (tests wait on it). */
export function plotBootstrap(plots: { id: string; spec: unknown }[]): string {
  return `<script>
window.drawPlots = function (plots) {
  return Promise.all(plots.map(function (p) { return vegaEmbed('#' + p.id, p.spec, { renderer: 'svg', actions: false }); }));
};
window.drawPlots(${scriptJson(plots)}).then(function () { window.plotsDrawn = true; }, function (e) { console.error(e); });
</script>`;
}

export function renderPage(opts: { title: string; header: string; body: string; plots: { id: string; spec: unknown }[]; extraScript?: string }): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(opts.title)}</title>${STYLE}
${plotScripts()}
</head><body>
${opts.header}
${opts.body}
${plotBootstrap(opts.plots)}
${opts.extraScript ?? ''}
</body></html>`;
}
