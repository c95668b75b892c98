import type { RunProgress, StageProgress } from '../workflows/types.js';

/** A plain-text table with aligned columns. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(cells[0]!), line(widths.map((w) => '-'.repeat(w))), ...cells.slice(1).map(line)].join('\n');
}

export function bar(done: number, total: number, width = 24): string {
  if (total <= 0) return ' '.repeat(width);
  const filled = Math.min(width, Math.round((done / total) * width));
  return '#'.repeat(filled) + '.'.repeat(width - filled);
}

export function duration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '';
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
}

export function renderProgress(p: RunProgress): string {
  const rows = p.stages.map((s: StageProgress) => [
    s.id,
    s.kind,
    s.status,
    s.total > 0 ? `[${bar(s.done, s.total)}] ${s.done}/${s.total}` : '',
    s.failed > 0 ? String(s.failed) : '',
    s.etaSeconds !== undefined ? duration(s.etaSeconds) : '',
    s.error ? s.error.slice(0, 100) : s.reusedFrom ? `reused from ${s.reusedFrom}` : '',
  ]);
  return `run ${p.runId}: ${p.status}\n${table(['stage', 'kind', 'status', 'progress', 'failed', 'eta', 'error'], rows)}`;
}
