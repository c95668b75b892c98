/**
 * Results of stage kinds other than `evaluate` (whose metrics table is cli/commands/results.ts):
 * a renderer per kind from its artifacts' summaries; a kind without one shows its summaries as is.
 */
import { runArtifacts, type ArtifactListing } from '../db/artifacts.js';
import { getStages } from '../db/queries.js';
import { renderDistill } from './distill-results.js';
import type { Connected } from './connect.js';
import { processIo, type Io } from './io.js';
import { table } from './render.js';
import { renderSweepCurve } from './sweep-results.js';

type Renderer = (stageId: string, artifacts: ArtifactListing[]) => string;

interface ErrorTypeStats {
  requested: number;
  written: number;
  kept: number;
  filtered: Record<string, number>;
  request_failed: number;
}

/** synthesize: per error type, requested → written → filtered (by reason) → kept; then items. */
const renderSynthesize: Renderer = (stageId, artifacts) => {
  const out: string[] = [];
  for (const a of artifacts) {
    const s = a.summary as {
      source_items?: number;
      items?: number;
      k?: number;
      dropped?: Record<string, number>;
      error_types?: Record<string, ErrorTypeStats>;
    };
    const types = Object.entries(s.error_types ?? {});
    const reasons = [...new Set(types.flatMap(([, t]) => Object.keys(t.filtered)))].sort();
    const rows = types.map(([name, t]) => [name, t.requested, t.written, t.request_failed, ...reasons.map((r) => t.filtered[r] ?? 0), t.kept]);
    const sum = (f: (t: ErrorTypeStats) => number) => types.reduce((acc, [, t]) => acc + f(t), 0);
    rows.push([
      'total',
      sum((t) => t.requested),
      sum((t) => t.written),
      sum((t) => t.request_failed),
      ...reasons.map((r) => sum((t) => t.filtered[r] ?? 0)),
      sum((t) => t.kept),
    ]);
    out.push(
      `\nnegatives of stage ${stageId} (artifact ${a.id} "${a.name}": ${s.items ?? a.rows} ${a.kind} of ${s.source_items ?? '?'} source items, K ≤ ${s.k ?? '?'})`,
    );
    out.push(table(['error type', 'requested', 'written', 'failed', ...reasons.map((r) => `filtered:${r}`), 'kept'], rows));
    for (const [reason, n] of Object.entries(s.dropped ?? {})) out.push(`dropped items: ${n} (${reason})`);
  }
  return out.join('\n');
};

const RENDERERS: Record<string, Renderer> = { synthesize: renderSynthesize, distill: renderDistill, sweep: renderSweepCurve };

/** Prints the results of the run's non-evaluate stages (or only `stageId`). */
export async function printKindResults(conn: Connected, runId: string, stageId?: string, io: Io = processIo): Promise<void> {
  const stages = (await getStages(conn.db.db, runId)).filter((s) => s.kind !== 'evaluate' && (!stageId || s.stageId === stageId));
  if (stages.length === 0) return;
  for (const block of renderKindResults(stages, await runArtifacts(conn.db.db, runId))) io.out(block);
}

/**
 * The results of each stage by its kind's renderer; a kind without one shows each artifact's
 * summary, or the stage's output when it produced no artifact.
 */
export function renderKindResults(stages: readonly { stageId: string; kind: string; output: unknown }[], artifacts: readonly ArtifactListing[]): string[] {
  const out: string[] = [];
  for (const s of stages) {
    const own = artifacts.filter((a) => a.stageId === s.stageId);
    const render = RENDERERS[s.kind];
    if (render && own.length > 0) out.push(render(s.stageId, own));
    else if (own.length > 0)
      for (const a of own) out.push(`\nstage ${s.stageId} (${s.kind}): ${a.kind} "${a.name}", ${a.rows} rows, summary ${JSON.stringify(a.summary)}`);
    else if (s.output) out.push(`\nstage ${s.stageId} (${s.kind}): ${JSON.stringify((s.output as { ref?: unknown }).ref ?? s.output)}`);
  }
  return out;
}
