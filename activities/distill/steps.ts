/**
 * What both ways of running distill's reject/retry loop share: the stage's items and captions as
 * read from Postgres, the request each step sends, and the `distill_attempts` row each attempt
 * ends in. The round-by-round activities (activities/stages/distill.ts, kept for runs begun before
 * the pipeline) and the per-item pipeline (pipeline.ts) send byte-identical requests under the
 * same item keys, so they share cache entries and reach the same verdicts.
 */
import type { Db } from '../../db/client.js';
import { rewriteTemplateFor, type DistillParams } from '../../spec/kinds/distill.js';
import { labelFor } from '../evaluate/prompt.js';
import { loadResults, type RequestResult } from '../inference/store.js';
import type { PreparedMessage, PrepareRequestRow } from '../inference/types.js';
import { fill, leakedHint, renderReasonPrompt, traceHash, traceWithAnswer, type Completion, type RejectionReason, type TraceStatus } from './core.js';

export interface StageRef {
  runId: string;
  stageId: string;
  seed: number;
  params: DistillParams;
  sourceArtifactId: number;
  items: number;
}

export interface McRow {
  item_key: string;
  query: string;
  image_hash: string | null;
  mime: string | null;
  candidates: string[];
  best: number;
  meta: { error_types?: (string | null)[] } | null;
}

export const captionKey = (imageHash: string) => `caption|${imageHash}`;
export const reasonKey = (itemKey: string, attempt: number) => `${itemKey}|reason|a${attempt}`;
export const rewriteKey = (itemKey: string, pass: string, attempt: number) => `${itemKey}|rw:${pass}|a${attempt}`;

/** What an item without an image is described as. */
export const NO_IMAGE_CAPTION = '(the item has no image)';

export const completionOf = (r: RequestResult | undefined): Completion =>
  r && r.status === 'succeeded'
    ? { ok: true, content: r.content ?? '', reasoning: r.reasoning, completionTokens: r.completionTokens ?? 0 }
    : { ok: false, content: '', reasoning: null, completionTokens: 0 };

/** Captions by image hash (text null: the caption request failed). */
export async function loadCaptions(db: Db, r: StageRef, items: readonly McRow[]): Promise<Map<string, { text: string | null; id: number }>> {
  const keys = [...new Set(items.flatMap((i) => (i.image_hash ? [captionKey(i.image_hash)] : [])))];
  const out = new Map<string, { text: string | null; id: number }>();
  if (keys.length === 0) return out;
  for (const res of await loadResults(db, r.runId, r.stageId, { itemKeys: keys })) {
    out.set(res.itemKey.slice('caption|'.length), { text: res.status === 'succeeded' ? (res.content ?? '').trim() : null, id: res.id });
  }
  return out;
}

/** The reasoning request of an item's attempt (sample index = attempt). */
export function reasonRequestRow(r: StageRef, item: McRow, caption: string, attempt: number): PrepareRequestRow {
  const hint = r.params.hint ? fill(r.params.hint_template, { label: labelFor(item.best, r.params.labels) }) : null;
  const text = renderReasonPrompt(r.params.reason_template, {
    caption,
    question: item.query,
    candidates: item.candidates,
    labels: r.params.labels,
    hint,
  });
  return {
    runId: r.runId,
    stageId: r.stageId,
    itemKey: reasonKey(item.item_key, attempt),
    endpoint: r.params.reasoner,
    sampleIndex: attempt,
    request: {
      messages: [{ role: 'user', content: text }],
      params: { temperature: r.params.temperature, max_tokens: r.params.max_tokens, seed: r.seed },
    },
  };
}

/** Rewrite pass `pass` of a trace that passed every earlier check of its attempt. */
export function rewriteRequestRow(r: StageRef, pass: number, item: McRow, trace: string, attempt: number): PrepareRequestRow {
  const p = r.params.rewrites[pass]!;
  const template = rewriteTemplateFor(p)!;
  return {
    runId: r.runId,
    stageId: r.stageId,
    itemKey: rewriteKey(item.item_key, p.name, attempt),
    endpoint: p.endpoint,
    sampleIndex: attempt,
    request: {
      messages: [{ role: 'user', content: fill(template, { trace: traceWithAnswer(trace, labelFor(item.best, r.params.labels)) }) }] as PreparedMessage[],
      params: { temperature: p.temperature, max_tokens: p.max_tokens, seed: r.seed },
    },
  };
}

/** Where one item's attempt stands after the reasoning and the rewrites run so far. */
export interface ChainState {
  item: McRow;
  reason: RejectionReason | null;
  trace: string;
  choice: number | null;
  tokens: number;
  requests: { caption: number | null; reason: number | null; rewrites: Record<string, number> };
}

/** One `distill_attempts` row. */
export interface AttemptRow {
  key: string;
  attempt: number;
  status: TraceStatus;
  choice: number | null;
  best: number;
  trace: string;
  hash: string | null;
  tokens: number;
  requests: string;
  errorTypes: string;
}

/** The final verdict of an attempt whose every step ran: a passed trace that still names the hint is rejected. */
export function attemptRowOf(r: StageRef, attempt: number, s: ChainState, hintPatterns: readonly RegExp[]): AttemptRow {
  let status: TraceStatus = s.reason ?? 'accepted';
  if (status === 'accepted' && r.params.hint && leakedHint(s.trace, hintPatterns) !== null) status = 'hint_leaked';
  const errorTypes = [...new Set((s.item.meta?.error_types ?? []).filter((t): t is string => typeof t === 'string'))].sort();
  return {
    key: s.item.item_key,
    attempt,
    status,
    choice: s.choice,
    best: s.item.best,
    trace: s.trace,
    hash: status === 'accepted' ? traceHash(s.item.item_key, s.trace) : null,
    tokens: s.tokens,
    requests: JSON.stringify(s.requests),
    errorTypes: JSON.stringify(errorTypes),
  };
}

export const hintPatternsOf = (params: DistillParams) => params.hint_patterns.map((p) => new RegExp(p, 'i'));

/** Writes attempt rows (idempotent: a retried step writes the same verdicts over them). */
export async function writeAttempts(db: Db, r: Pick<StageRef, 'runId' | 'stageId' | 'params'>, rows: readonly AttemptRow[]): Promise<void> {
  if (rows.length === 0) return;
  await db.$client.query(
    `insert into distill_attempts (run_id, stage_id, item_key, attempt, status, hint, choice, best, trace, trace_hash, trace_tokens, requests, error_types)
     select $1, $2, key, attempt, status, $3, choice, best, trace, hash, tokens, requests, error_types
     from unnest($4::text[], $5::int[], $6::text[], $7::int[], $8::int[], $9::text[], $10::text[], $11::int[], $12::jsonb[], $13::jsonb[])
       as t(key, attempt, status, choice, best, trace, hash, tokens, requests, error_types)
     on conflict (run_id, stage_id, item_key, attempt) do update set status = excluded.status, choice = excluded.choice, trace = excluded.trace,
       trace_hash = excluded.trace_hash, trace_tokens = excluded.trace_tokens, requests = excluded.requests, error_types = excluded.error_types`,
    [
      r.runId,
      r.stageId,
      r.params.hint,
      rows.map((x) => x.key),
      rows.map((x) => x.attempt),
      rows.map((x) => x.status),
      rows.map((x) => x.choice),
      rows.map((x) => x.best),
      rows.map((x) => x.trace),
      rows.map((x) => x.hash),
      rows.map((x) => x.tokens),
      rows.map((x) => x.requests),
      rows.map((x) => x.errorTypes),
    ],
  );
}
