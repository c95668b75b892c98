/** `judgeflow results` for a `sweep` stage: its curve as a table (score vs N per strategy, per capability, costs). */
import type { CurvePoint } from '../activities/sweep/curve.js';
import type { ArtifactListing } from '../db/artifacts.js';
import { table } from './render.js';

type Point = CurvePoint;
interface Role {
  rows: number;
  cached: number;
  failed: number;
}
interface Summary {
  questions?: number;
  n_max?: number;
  resamples?: number;
  grader?: string;
  strategies?: string[];
  points?: Point[];
  requests?: { policy: Role; judge: Role; grader: Role };
}

const fmt = (p: Point | undefined, withCi: boolean) =>
  p === undefined
    ? '–'
    : withCi && p.ciLow !== null && p.ciHigh !== null
      ? `${p.score.toFixed(1)} [${p.ciLow.toFixed(1)}, ${p.ciHigh.toFixed(1)}]`
      : p.score.toFixed(1);

const compact = (x: number) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1e4 ? `${(x / 1e3).toFixed(0)}k` : x.toFixed(0));

/** One row per (strategy, N): total with its 95% CI, each capability, then what one best-of-N run over the questions costs. */
export function renderSweepCurve(stageId: string, artifacts: ArtifactListing[]): string {
  const out: string[] = [];
  for (const a of artifacts) {
    const s = a.summary as Summary;
    const points = s.points ?? [];
    const caps = [...new Set(points.map((p) => p.capability).filter((c) => c !== 'total'))].sort();
    const byKey = new Map(points.map((p) => [`${p.strategy}|${p.n}|${p.capability}`, p]));
    const ns = [...new Set(points.map((p) => p.n))].sort((x, y) => x - y);
    const rows: (string | number)[][] = [];
    for (const strategy of s.strategies ?? [...new Set(points.map((p) => p.strategy))]) {
      for (const n of ns) {
        const total = byKey.get(`${strategy}|${n}|total`);
        if (!total) continue;
        rows.push([
          strategy,
          n,
          fmt(total, true),
          ...caps.map((c) => fmt(byKey.get(`${strategy}|${n}|${c}`), false)),
          total.policySamples,
          Math.round(total.judgeCalls),
          compact(total.tokens),
          total.costUsd > 0 ? `$${total.costUsd.toFixed(4)}` : '–',
        ]);
      }
    }
    out.push(
      `\ncurve of stage ${stageId} (artifact ${a.id}: ${s.questions ?? '?'} questions, pool of ${s.n_max ?? '?'} samples each, ${s.resamples ?? 0} resamples per N, grader ${s.grader ?? '?'})`,
    );
    out.push(table(['strategy', 'N', 'score [95% CI]', ...caps, 'policy samples', 'judge calls', 'tokens', 'cost'], rows));
    const r = s.requests;
    if (r) {
      const role = (name: string, x: Role) => `${name} ${x.rows}${x.cached ? ` (${x.cached} cached)` : ''}${x.failed ? ` (${x.failed} failed)` : ''}`;
      out.push(`requests made by the stage: ${role('policy', r.policy)}, ${role('judge', r.judge)}, ${role('grader', r.grader)}`);
    }
  }
  return out.join('\n');
}
