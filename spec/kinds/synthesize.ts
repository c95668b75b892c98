import { z } from 'zod';
import { DEFAULT_ERROR_TYPES, DEFAULT_REFUSAL_PATTERNS, DEFAULT_TEMPLATES, unknownPlaceholders } from '../../activities/synthesize/core.js';
import { dataRefSchema } from '../artifacts.js';
import { registerStageKind, type SpecIssue } from '../kinds.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

/**
 * `synthesize` (METHOD.md §2): from question/answer items, an MLLM writes flawed negatives, one
 * request per (item, error type, sample); filtered negatives and the reference become K-option
 * multiple-choice items (the `items` mc-items artifact). Example:
 *
 *   - id: synth
 *     uses: synthesize
 *     with: { items: easy, writer: negatives, error_types: [hallucination, incompleteness], k: 3 }
 */
export const synthesizeParams = z
  .object({
    /** qa-items: a dataset under `datasets:` or `{ from: <stage> }`. */
    items: dataRefSchema,
    /** The endpoint that writes the negatives (an MLLM: it gets the image). */
    writer: z.string().min(1),
    /** Error types to inject, one request per item, type and sample. */
    error_types: z
      .array(z.string().regex(NAME))
      .min(1)
      .default([...DEFAULT_ERROR_TYPES]),
    /** Prompt template per error type (`{question}`, `{reference}`, `{error_type}`); built-in ones for the defaults. */
    templates: z.record(z.string(), z.string().min(1)).default({}),
    /** Samples per item and error type (request seeds differ by sample). */
    samples: z.number().int().min(1).max(16).default(1),
    /** Options per multiple-choice item (the reference + up to K-1 negatives). */
    k: z.number().int().min(2).max(10).default(4),
    /** Items with fewer kept negatives are dropped (reason recorded). */
    min_negatives: z.number().int().min(1).default(1),
    /** A negative whose normalized edit distance to the reference (or to a kept negative) is below this is rejected. */
    near_identical: z.number().min(0).max(1).default(0.1),
    /** Longest negative kept, in characters. */
    max_chars: z.number().int().positive().default(2000),
    /** Case-insensitive regular expressions of refusals. */
    refusal_patterns: z.array(z.string().min(1)).default([...DEFAULT_REFUSAL_PATTERNS]),
    system: z.string().optional(),
    temperature: z.number().min(0).max(2).default(0.9),
    max_tokens: z.number().int().positive().default(512),
    /** About this many requests per chunk, and chunks in flight. */
    chunk_size: z.number().int().positive().default(600),
    parallel: z.number().int().positive().max(64).default(3),
  })
  .strict();
export type SynthesizeParams = z.infer<typeof synthesizeParams>;

/** The template of an error type: the spec's, else the built-in one. */
export function templateFor(params: Pick<SynthesizeParams, 'templates'>, errorType: string): string | undefined {
  return params.templates[errorType] ?? DEFAULT_TEMPLATES[errorType];
}

registerStageKind({
  kind: 'synthesize',
  description: 'flawed negatives per (item, error type, sample) from an MLLM, filtered, assembled into K-option multiple-choice items',
  workflowType: 'synthesizeStage',
  params: synthesizeParams,
  endpoints: (p) => [p.writer],
  consumes: (p) => [{ param: 'items', ref: p.items, kind: 'qa-items' }],
  produces: { items: 'mc-items' },
  check({ index, params }) {
    const at = `stages[${index}].with`;
    const issues: SpecIssue[] = [];
    const types = params.error_types;
    if (new Set(types).size !== types.length) issues.push({ path: `${at}.error_types`, message: 'an error type is listed twice' });
    types.forEach((t, j) => {
      if (templateFor(params, t) === undefined)
        issues.push({
          path: `${at}.error_types[${j}]`,
          message: `no template for error type "${t}": add templates.${t} (built-in: ${Object.keys(DEFAULT_TEMPLATES).join(', ')})`,
        });
    });
    for (const [t, tpl] of Object.entries(params.templates)) {
      if (!types.includes(t)) issues.push({ path: `${at}.templates.${t}`, message: `"${t}" is not in error_types (${types.join(', ')})` });
      const bad = unknownPlaceholders(tpl);
      if (bad.length > 0)
        issues.push({
          path: `${at}.templates.${t}`,
          message: `unknown placeholder(s) ${bad.map((b) => `{${b}}`).join(', ')}; known: {question}, {reference}, {error_type}`,
        });
      if (!tpl.includes('{reference}')) issues.push({ path: `${at}.templates.${t}`, message: 'the template must show the reference answer: add {reference}' });
    }
    params.refusal_patterns.forEach((p, j) => {
      try {
        new RegExp(p, 'i');
      } catch (err) {
        issues.push({ path: `${at}.refusal_patterns[${j}]`, message: `not a regular expression: ${(err as Error).message}` });
      }
    });
    const most = types.length * params.samples;
    if (params.min_negatives > most)
      issues.push({
        path: `${at}.min_negatives`,
        message: `${params.min_negatives} is more than the ${most} negatives requested per item (error_types × samples)`,
      });
    if (params.min_negatives > params.k - 1)
      issues.push({ path: `${at}.min_negatives`, message: `${params.min_negatives} is more than k - 1 = ${params.k - 1} negatives an item can hold` });
    return issues;
  },
});
