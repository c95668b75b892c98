/**
 * The pure core of `distill` (METHOD.md §3): prompt templates (caption, reason, hint, rewrite,
 * the judge's answer), reading a trace from `<think>` or `reasoning_content`, the verdict on one
 * attempt with its rejection reason, and the seeded train/validation split. No I/O.
 */
import { createHash } from 'node:crypto';
import { parseChoice } from '../evaluate/parse.js';
import { labelFor, renderCandidates, type LabelStyle } from '../evaluate/prompt.js';

/** The caption request (an MLLM gets the image and this text). */
export const DEFAULT_CAPTION_TEMPLATE =
  'Describe this image in detail: every object with its colour, shape, size and position, any text in it, counts, and the relations between objects. Write plain prose; do not guess what is not visible.';

/**
 * The reasoner's prompt. Placeholders: `{caption}` the image description, `{question}`, `{options}`
 * (labelled blocks, `[Response A]\n<text>`), `{labels_or}` ("A, B or C"), `{hint}` (the rendered
 * hint template plus a blank line when `hint: true`, else empty).
 */
export const DEFAULT_REASON_TEMPLATE = `You cannot see the image, but here is a detailed description of it.

[Description]
{caption}

[Question]
{question}

{options}
{hint}Which response answers the question about the image best: {labels_or}? Reason step by step inside <think></think>, then give only the label inside <answer></answer>.`;

/** The hint, when `hint: true`. Placeholder `{label}`: the right option's label. */
export const DEFAULT_HINT_TEMPLATE = 'Hint: a careful expert leaned towards {label}.';

/** Built-in rewrite passes (placeholder `{trace}`: the trace followed by its final `<answer>`). */
export const DEFAULT_REWRITE_TEMPLATES: Readonly<Record<string, string>> = {
  'remove-hint': `Rewrite the reasoning below so that it never mentions or relies on a hint, a suggested answer or an expert's opinion; it must reach its conclusion from the evidence alone. Keep every other step and keep the final answer unchanged. Reply with the rewritten reasoning followed by the same final <answer></answer> line.

<trace>
{trace}
</trace>`,
  'to-image': `Rewrite the reasoning below as if the writer had looked at the image itself: replace every reference to "the description" (such as "the description says") with direct references to "the image". Keep every step and keep the final answer unchanged. Reply with the rewritten reasoning followed by the same final <answer></answer> line.

<trace>
{trace}
</trace>`,
};

/** How the judge answers in the SFT set: `{trace}` the accepted reasoning, `{label}` the right option. */
export const DEFAULT_ANSWER_TEMPLATE = '<think>{trace}</think><answer>{label}</answer>';

/** A trace that still matches one of these (case-insensitive) after the rewrites leaked the hint. */
export const DEFAULT_HINT_PATTERNS = ['\\bhint(s|ed)?\\b', '\\bexpert\\b', '\\bsuggested answer\\b'];

export const REASON_PLACEHOLDERS = ['caption', 'question', 'options', 'labels_or', 'hint'] as const;
export const HINT_PLACEHOLDERS = ['label'] as const;
export const REWRITE_PLACEHOLDERS = ['trace'] as const;
export const ANSWER_PLACEHOLDERS = ['trace', 'label'] as const;

/** The placeholders `{name}` of `template` that are not in `known`. */
export function unknownPlaceholders(template: string, known: readonly string[]): string[] {
  return [...template.matchAll(/\{([a-z_]+)\}/g)].map((m) => m[1]!).filter((p) => !known.includes(p));
}

/** Substitutes `{name}` placeholders in one pass (a placeholder inside a value stays literal). */
export function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{([a-z_]+)\}/g, (m, name: string) => (Object.prototype.hasOwnProperty.call(values, name) ? values[name]! : m));
}

export function renderReasonPrompt(
  template: string,
  v: { caption: string; question: string; candidates: readonly string[]; labels: LabelStyle; hint: string | null },
): string {
  const labels = v.candidates.map((_, p) => labelFor(p, v.labels));
  return fill(template, {
    caption: v.caption,
    question: v.question,
    options: renderCandidates(v.candidates, v.labels),
    labels_or: `${labels.slice(0, -1).join(', ')} or ${labels[labels.length - 1]!}`,
    hint: v.hint === null ? '' : `${v.hint}\n\n`,
  });
}

/** What the rewriter is shown and answers in: the trace, a blank line, `<answer>X</answer>`. */
export function traceWithAnswer(trace: string, label: string): string {
  return `${trace.trim()}\n\n<answer>${label}</answer>`;
}

/**
 * A reasoner's output read as (trace, answer part): a non-empty `reasoning_content` is the trace
 * and the content the answer; else the text inside `<think>…</think>` is the trace and what
 * follows it the answer; else (no thinking block) the content without its final `<answer>` tag.
 */
export function readTrace(content: string, reasoning: string | null): { trace: string; answer: string } {
  if (reasoning !== null && reasoning.trim() !== '') return { trace: reasoning.trim(), answer: content };
  const think = /<think>([\s\S]*?)<\/think>/i.exec(content);
  if (think) return { trace: think[1]!.trim(), answer: content.slice(think.index + think[0].length) };
  return { trace: stripAnswer(content), answer: content };
}

/** The text without its trailing `<answer>…</answer>` (and any `<think>` tags around it). */
export function stripAnswer(text: string): string {
  return text
    .replace(/<\/?think>/gi, '')
    .replace(/\s*(?:final answer\s*:?\s*)?<answer>[\s\S]*?(?:<\/answer>|$)\s*$/i, '')
    .trim();
}

export const REJECTION_REASONS = ['wrong_choice', 'unparseable', 'rewrite_changed_choice', 'hint_leaked', 'over_length', 'request_failed'] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];
export type TraceStatus = 'accepted' | RejectionReason;

/** One request's outcome as the verdict needs it. */
export interface Completion {
  ok: boolean;
  content: string;
  reasoning: string | null;
  completionTokens: number;
}

export interface ReasonVerdict {
  /** null: the reasoning step passed (the rewrites come next). */
  reason: RejectionReason | null;
  trace: string;
  /** The parsed choice (0-based position), null when none. */
  choice: number | null;
  tokens: number;
}

/** The verdict on a reasoner's output: failed, unparseable, wrong, over length, or passed. */
export function judgeReasoning(out: Completion, opts: { k: number; best: number; labels: LabelStyle; maxTraceTokens: number }): ReasonVerdict {
  if (!out.ok) return { reason: 'request_failed', trace: '', choice: null, tokens: 0 };
  const { trace, answer } = readTrace(out.content, out.reasoning);
  const choice = parseChoice(answer, opts.k, opts.labels).position;
  const tokens = out.completionTokens;
  if (choice === null) return { reason: 'unparseable', trace, choice, tokens };
  if (choice !== opts.best) return { reason: 'wrong_choice', trace, choice, tokens };
  if (tokens > opts.maxTraceTokens) return { reason: 'over_length', trace, choice, tokens };
  return { reason: null, trace, choice, tokens };
}

/** The verdict on a rewrite of a passed trace: failed, choice changed (or unreadable), or the new trace. */
export function judgeRewrite(out: Completion, opts: { k: number; best: number; labels: LabelStyle }): { reason: RejectionReason | null; trace: string } {
  if (!out.ok) return { reason: 'request_failed', trace: '' };
  const text = out.reasoning !== null && out.reasoning.trim() !== '' ? `${out.reasoning}\n${out.content}` : out.content;
  const visible = text.replace(/<\/?think>/gi, '');
  const choice = parseChoice(visible, opts.k, opts.labels).position;
  if (choice !== opts.best) return { reason: 'rewrite_changed_choice', trace: stripAnswer(visible) };
  return { reason: null, trace: stripAnswer(visible) };
}

/** The first hint pattern a trace still matches, or null. */
export function leakedHint(trace: string, patterns: readonly RegExp[]): string | null {
  for (const p of patterns) if (p.test(trace)) return p.source;
  return null;
}

/** sha256 (hex) of an accepted trace: the item key, the attempt and the final trace text. */
export function traceHash(itemKey: string, trace: string): string {
  return createHash('sha256').update(`${itemKey}\u0000${trace}`).digest('hex');
}

/** True when the item goes to validation: a seeded hash of (seed, item key) below `fraction`. */
export function isValidation(seed: number, itemKey: string, fraction: number): boolean {
  if (fraction <= 0) return false;
  const d = createHash('sha256').update(`judgeflow/distill/split\u0000${seed}\u0000${itemKey}`).digest();
  return d.readUInt32LE(0) / 0x1_0000_0000 < fraction;
}
