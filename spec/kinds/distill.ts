import { z } from 'zod';
import {
  ANSWER_PLACEHOLDERS,
  DEFAULT_ANSWER_TEMPLATE,
  DEFAULT_CAPTION_TEMPLATE,
  DEFAULT_HINT_PATTERNS,
  DEFAULT_HINT_TEMPLATE,
  DEFAULT_REASON_TEMPLATE,
  DEFAULT_REWRITE_TEMPLATES,
  HINT_PLACEHOLDERS,
  REASON_PLACEHOLDERS,
  REWRITE_PLACEHOLDERS,
  unknownPlaceholders,
} from '../../activities/distill/core.js';
import { validateJudgeTemplate } from '../../activities/evaluate/prompt.js';
import { dataRefSchema } from '../artifacts.js';
import { registerStageKind, type SpecIssue } from '../kinds.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

/** One rewrite pass: its name, the endpoint that rewrites, and its template (built-in for `remove-hint`, `to-image`). */
export const rewritePassSchema = z.strictObject({
  name: z.string().regex(NAME),
  endpoint: z.string().min(1),
  /** Placeholder `{trace}`: the trace and its final `<answer>` line. */
  template: z.string().min(1).optional(),
  temperature: z.number().min(0).max(2).default(0.2),
  max_tokens: z.number().int().positive().default(4096),
});

/**
 * `distill` (METHOD.md §3): a captioner describes each distinct image once; a text reasoner gets
 * caption + question + labelled options (+ a hint naming the right one) and writes a trace ending
 * in a choice; optional rewrite passes; traces whose choice differs from the known best (or that
 * fail another check) are rejected and retried with new sample indices up to `max_attempts`.
 * Produces an `sft` set (accepted traces in the judge's answer format) and an `rl` set (items with
 * a verifiable answer), both split train/validation by a seeded fraction. Example:
 *
 *   - id: distill
 *     uses: distill
 *     needs: [synth]
 *     with: { items: { from: synth }, captioner: captioner, reasoner: reasoner, hint: true,
 *             rewrites: [{ name: remove-hint, endpoint: rewriter }, { name: to-image, endpoint: rewriter }] }
 */
export const distillParams = z
  .object({
    /** mc-items: a dataset under `datasets:` or `{ from: <stage> }`. */
    items: dataRefSchema,
    /** The MLLM that describes each distinct image (one request per image hash). */
    captioner: z.string().min(1),
    /** The text-only reasoner. */
    reasoner: z.string().min(1),
    caption_template: z.string().min(1).default(DEFAULT_CAPTION_TEMPLATE),
    /** Placeholders `{caption} {question} {options} {labels_or} {hint}`. */
    reason_template: z.string().min(1).default(DEFAULT_REASON_TEMPLATE),
    /** Show the reasoner a hint naming the right option. */
    hint: z.boolean().default(true),
    /** Placeholder `{label}`. */
    hint_template: z.string().min(1).default(DEFAULT_HINT_TEMPLATE),
    /** Case-insensitive regular expressions: a final trace matching one (with `hint: true`) is rejected as `hint_leaked`. */
    hint_patterns: z.array(z.string().min(1)).default([...DEFAULT_HINT_PATTERNS]),
    /** Rewrite passes, in order, over the traces that passed the reasoning checks. */
    rewrites: z.array(rewritePassSchema).default([]),
    /** Reasoning attempts per item (sample indices 0..max_attempts-1); then the item is dropped. */
    max_attempts: z.number().int().min(1).max(32).default(4),
    /** A reasoner output longer than this (completion tokens) is rejected as `over_length`. */
    max_trace_tokens: z.number().int().positive().default(2048),
    labels: z.enum(['letters', 'numbers']).default('letters'),
    /** The judge's prompt in the SFT and RL sets (evaluate's placeholders); default: evaluate's template. */
    judge_template: z.string().min(1).optional(),
    /** The judge's answer in the SFT set: `{trace}`, `{label}`. */
    answer_template: z.string().min(1).default(DEFAULT_ANSWER_TEMPLATE),
    /** Fraction of items put in `validation` (seeded by the run seed and the item key). */
    validation_fraction: z.number().min(0).max(0.5).default(0.05),
    /** `all`: every item goes to the RL set; `unused`: only items without an accepted trace. */
    rl_items: z.enum(['all', 'unused']).default('all'),
    caption_temperature: z.number().min(0).max(2).default(0.2),
    caption_max_tokens: z.number().int().positive().default(512),
    temperature: z.number().min(0).max(2).default(0.6),
    max_tokens: z.number().int().positive().default(4096),
    /** Caption requests per inference activity and items per reasoning activity; activities in flight. */
    chunk_size: z.number().int().positive().default(500),
    parallel: z.number().int().positive().max(64).default(2),
  })
  .strict();
export type DistillParams = z.infer<typeof distillParams>;
export type RewritePass = z.infer<typeof rewritePassSchema>;

/** The template of a rewrite pass: its own, else the built-in one of its name. */
export function rewriteTemplateFor(pass: Pick<RewritePass, 'name' | 'template'>): string | undefined {
  return pass.template ?? DEFAULT_REWRITE_TEMPLATES[pass.name];
}

registerStageKind({
  kind: 'distill',
  description: "captions once per image, a text reasoner's traces with rejection sampling and rewrites, into SFT and RL training sets",
  workflowType: 'distillStage',
  params: distillParams,
  endpoints: (p) => [...new Set([p.captioner, p.reasoner, ...p.rewrites.map((r) => r.endpoint)])],
  consumes: (p) => [{ param: 'items', ref: p.items, kind: 'mc-items' }],
  produces: { sft: 'sft-set', rl: 'rl-set' },
  check({ index, params }) {
    const at = `stages[${index}].with`;
    const issues: SpecIssue[] = [];
    const placeholders = (field: string, tpl: string, known: readonly string[], required: readonly string[]) => {
      const bad = unknownPlaceholders(tpl, known);
      if (bad.length > 0)
        issues.push({
          path: `${at}.${field}`,
          message: `unknown placeholder(s) ${bad.map((b) => `{${b}}`).join(', ')}; known: ${known.map((k) => `{${k}}`).join(', ')}`,
        });
      for (const r of required) if (!tpl.includes(`{${r}}`)) issues.push({ path: `${at}.${field}`, message: `the template must contain {${r}}` });
    };
    placeholders('caption_template', params.caption_template, [], []);
    placeholders(
      'reason_template',
      params.reason_template,
      REASON_PLACEHOLDERS,
      params.hint ? ['caption', 'question', 'options', 'hint'] : ['caption', 'question', 'options'],
    );
    placeholders('hint_template', params.hint_template, HINT_PLACEHOLDERS, ['label']);
    placeholders('answer_template', params.answer_template, ANSWER_PLACEHOLDERS, ['trace', 'label']);
    if (params.judge_template !== undefined) {
      try {
        validateJudgeTemplate(params.judge_template);
      } catch (err) {
        issues.push({ path: `${at}.judge_template`, message: (err as Error).message });
      }
    }
    const names = new Set<string>();
    params.rewrites.forEach((r, j) => {
      if (names.has(r.name)) issues.push({ path: `${at}.rewrites[${j}].name`, message: `rewrite pass "${r.name}" is listed twice` });
      names.add(r.name);
      const tpl = rewriteTemplateFor(r);
      if (tpl === undefined)
        issues.push({
          path: `${at}.rewrites[${j}].template`,
          message: `no template for rewrite pass "${r.name}": add template (built-in passes: ${Object.keys(DEFAULT_REWRITE_TEMPLATES).join(', ')})`,
        });
      else placeholders(`rewrites[${j}].template`, tpl, REWRITE_PLACEHOLDERS, ['trace']);
    });
    params.hint_patterns.forEach((p, j) => {
      try {
        new RegExp(p, 'i');
      } catch (err) {
        issues.push({ path: `${at}.hint_patterns[${j}]`, message: `not a regular expression: ${(err as Error).message}` });
      }
    });
    return issues;
  },
});
