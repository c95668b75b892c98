/**
 * The pure core of `synthesize` (METHOD.md §2): prompt templates per error type, the filters a
 * written negative goes through, and the seeded assembly of a K-option multiple-choice item.
 * No I/O.
 */
import { createRng } from '../evaluate/rng.js';

/** The error types written when the spec names none. */
export const DEFAULT_ERROR_TYPES = ['hallucination', 'incompleteness', 'faulty_reasoning', 'wrong_knowledge'] as const;

const FLAWS: Record<string, string> = {
  hallucination: 'a hallucination: an object, attribute, count, spatial relation or piece of text that does not match the image',
  incompleteness: 'incompleteness: it leaves out part of what the question asks for, or stops before the conclusion',
  faulty_reasoning: 'faulty reasoning: a calculation slip or a step of logic that does not follow',
  wrong_knowledge: 'wrong knowledge: a false fact about the world or the subject the question is about',
};

function defaultTemplate(flaw: string): string {
  return [
    'You write flawed answers that teach a judge model to spot mistakes.',
    '',
    'Question about the image: {question}',
    '',
    'Reference answer: <reference>{reference}</reference>',
    '',
    `Write a different answer to the question that sounds plausible but is wrong because of ${flaw}.`,
    'Keep the tone and length of the reference answer. Reply with the answer only.',
  ].join('\n');
}

/** Built-in prompt templates by error type; placeholders `{question}`, `{reference}`, `{error_type}`. */
export const DEFAULT_TEMPLATES: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(FLAWS).map(([k, v]) => [k, defaultTemplate(v)]));

export const TEMPLATE_PLACEHOLDERS = ['question', 'reference', 'error_type'] as const;

/** Answers that decline instead of answering (case-insensitive regular expressions). */
export const DEFAULT_REFUSAL_PATTERNS = [
  "^\\s*(i'?m|i am) (sorry|afraid)",
  "\\bi (can(no|')t|cannot|won'?t|am unable to|'m unable to)\\b.{0,40}\\b(help|assist|comply|provide|do that|answer)",
  '\\bas an ai\\b',
];

export class SynthesizeTemplateError extends Error {
  override readonly name = 'SynthesizeTemplateError';
}

/** The placeholders of a template that are not known. */
export function unknownPlaceholders(template: string): string[] {
  return [...template.matchAll(/\{([a-z_]+)\}/g)].map((m) => m[1]!).filter((p) => !(TEMPLATE_PLACEHOLDERS as readonly string[]).includes(p));
}

export function renderNegativePrompt(template: string, v: { question: string; reference: string; errorType: string }): string {
  return template.replace(/\{(question|reference|error_type)\}/g, (_, p: string) =>
    p === 'question' ? v.question : p === 'reference' ? v.reference : v.errorType,
  );
}

/** Lower case, whitespace collapsed, surrounding punctuation removed: what "the same text" means here. */
export function normalizeText(s: string): string {
  return s
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .replace(/^[\s"'`.,;:!?()[\]-]+|[\s"'`.,;:!?()[\]-]+$/g, '');
}

/**
 * Levenshtein distance over normalized texts divided by the longer length (0: equal, 1: nothing
 * in common). Only distances below `below` need to be exact: texts whose lengths alone put them
 * further apart, or whose every row already exceeds the bound, return 1 early.
 */
export function normalizedEditDistance(a: string, b: string, below = 1): number {
  const x = normalizeText(a);
  const y = normalizeText(b);
  const n = Math.max(x.length, y.length);
  if (n === 0) return 0;
  const bound = below * n;
  if (below < 1 && Math.abs(x.length - y.length) >= bound) return 1;
  let prev = new Array<number>(y.length + 1);
  let cur = new Array<number>(y.length + 1);
  for (let j = 0; j <= y.length; j++) prev[j] = j;
  for (let i = 1; i <= x.length; i++) {
    cur[0] = i;
    let rowMin = i;
    const xc = x.charCodeAt(i - 1);
    for (let j = 1; j <= y.length; j++) {
      const v = Math.min(prev[j - 1]! + (xc === y.charCodeAt(j - 1) ? 0 : 1), prev[j]! + 1, cur[j - 1]! + 1);
      cur[j] = v;
      if (v < rowMin) rowMin = v;
    }
    // The distance never falls below a row's minimum.
    if (below < 1 && rowMin >= bound) return 1;
    [prev, cur] = [cur, prev];
  }
  return prev[y.length]! / n;
}

export const FILTER_REASONS = ['empty', 'overlong', 'refusal', 'near_identical', 'duplicate'] as const;
export type FilterReason = (typeof FILTER_REASONS)[number];
/** A written negative's fate; `request_failed` when the request never produced one. */
export type NegativeStatus = 'kept' | FilterReason | 'request_failed';

export interface FilterOptions {
  /** Longest negative kept, in characters. */
  maxChars: number;
  /** A normalized edit distance to the reference (or to a kept negative) below this rejects. */
  nearIdentical: number;
  refusals: readonly RegExp[];
}

/**
 * Classifies the negatives of one item, in order: each is empty or overlong, a refusal, near
 * the reference, a near-duplicate of a negative kept before it, or kept.
 */
export function filterNegatives(
  reference: string,
  outputs: readonly (string | null)[],
  opts: FilterOptions,
): { status: NegativeStatus; distance: number | null }[] {
  const kept: string[] = [];
  return outputs.map((raw) => {
    if (raw === null) return { status: 'request_failed', distance: null };
    const text = raw.trim();
    if (text === '') return { status: 'empty', distance: null };
    if (text.length > opts.maxChars) return { status: 'overlong', distance: null };
    if (opts.refusals.some((r) => r.test(text))) return { status: 'refusal', distance: null };
    const distance = normalizedEditDistance(text, reference, opts.nearIdentical);
    if (distance < opts.nearIdentical) return { status: 'near_identical', distance };
    if (kept.some((k) => normalizedEditDistance(text, k, opts.nearIdentical) < opts.nearIdentical)) return { status: 'duplicate', distance };
    kept.push(text);
    return { status: 'kept', distance };
  });
}

export interface AssembledItem {
  /** The options in the order shown. */
  candidates: string[];
  /** Position of the reference answer. */
  best: number;
  /** Per option, the index into the negatives it came from (null: the reference). */
  origins: (number | null)[];
}

/**
 * A K-option item from the reference and the kept negatives (indexes into `negatives`): at most
 * K-1 negatives, picked by a stream seeded with (seed, item key), then every option placed by a
 * second seeded shuffle, so the best answer's position is uniform over the K positions.
 */
export function assembleItem(
  reference: string,
  negatives: readonly { index: number; text: string }[],
  k: number,
  seed: number,
  itemKey: string,
): AssembledItem {
  const pickRng = createRng('judgeflow/synthesize/pick', seed, itemKey);
  const pool = [...negatives];
  for (let i = pool.length - 1; i > 0; i--) {
    const j = pickRng.nextInt(i + 1);
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  const picked = pool.slice(0, Math.max(0, k - 1)).sort((a, b) => a.index - b.index);
  const options: { text: string; origin: number | null }[] = [{ text: reference, origin: null }, ...picked.map((p) => ({ text: p.text, origin: p.index }))];
  const posRng = createRng('judgeflow/synthesize/positions', seed, itemKey);
  for (let i = options.length - 1; i > 0; i--) {
    const j = posRng.nextInt(i + 1);
    [options[i], options[j]] = [options[j]!, options[i]!];
  }
  return { candidates: options.map((o) => o.text), best: options.findIndex((o) => o.origin === null), origins: options.map((o) => o.origin) };
}
