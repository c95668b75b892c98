/**
 * `judgeflow results` for `distill` stages: acceptance per attempt, per error type and with or
 * without the hint, rejection reasons, trace length, and the price of an accepted trace.
 */
import type { DistillSummary } from '../activities/stages/distill.js';
import type { ArtifactListing } from '../db/artifacts.js';
import { table } from './render.js';

const pct = (a: number, b: number) => (b > 0 ? `${((100 * a) / b).toFixed(1)}%` : '–');
const num = (x: number, digits = 1) => x.toLocaleString('en-US', { maximumFractionDigits: digits });

/** The text block of one distill stage (its `sft` artifact carries the statistics). */
export function renderDistill(stageId: string, artifacts: ArtifactListing[]): string {
  const sft = artifacts.find((a) => a.kind === 'sft-set');
  if (!sft) return `\nstage ${stageId} (distill): no sft-set artifact yet`;
  const s = sft.summary as DistillSummary;
  const out: string[] = [];
  const dropped = Object.values(s.dropped).reduce((a, b) => a + b, 0);
  out.push(
    `\ndistill stage ${stageId} (hint ${s.hint ? 'on' : 'off'}): ${s.source_items} items → ${s.accepted_items} accepted (${pct(s.accepted_items, s.source_items)}), ${dropped} dropped after ${s.max_attempts} attempt(s)`,
  );
  const attempts = Object.entries(s.attempts).sort(([a], [b]) => Number(a) - Number(b));
  out.push(
    table(
      ['attempt', 'tried', 'accepted', 'rate'],
      attempts.map(([n, a]) => [n, a.tried, a.accepted, pct(a.accepted, a.tried)]),
    ),
  );
  const types = Object.entries(s.error_types).sort(([a], [b]) => a.localeCompare(b));
  if (types.length > 0)
    out.push(
      table(
        ['error type', 'tried', 'accepted', 'rate'],
        types.map(([t, e]) => [t, e.tried, e.accepted, pct(e.accepted, e.tried)]),
      ),
    );
  const rejected = Object.values(s.rejections).reduce((a, b) => a + b, 0);
  out.push(
    `rejections: ${
      Object.entries(s.rejections)
        .sort(([, a], [, b]) => b - a)
        .map(([r, n]) => `${r} ${n} (${pct(n, rejected)})`)
        .join(', ') || 'none'
    }`,
  );
  out.push(`mean accepted trace: ${num(s.mean_trace_tokens)} tokens, ${num(s.mean_trace_chars, 0)} chars`);
  const rewrites = Object.entries(s.requests.rewrite).map(([p, n]) => `rewrite ${p} ${n}`);
  out.push(
    `requests: ${s.requests.total} (caption ${s.requests.caption}, reason ${s.requests.reason}${rewrites.length ? `, ${rewrites.join(', ')}` : ''}); tokens ${num(s.tokens.prompt + s.tokens.completion, 0)}`,
  );
  out.push(`per accepted trace: ${num(s.requests_per_accepted, 2)} requests, ${num(s.tokens_per_accepted, 0)} tokens`);
  out.push(
    `sets: sft ${s.sft.rows} rows (train ${s.sft.train}, validation ${s.sft.validation}); rl ${s.rl.rows} rows (${s.rl.items} items; train ${s.rl.train}, validation ${s.rl.validation})`,
  );
  return out.join('\n');
}
