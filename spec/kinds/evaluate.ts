import { z } from 'zod';
import { JudgeTemplateError, validateJudgeTemplate } from '../../activities/evaluate/prompt.js';
import { dataRefSchema } from '../artifacts.js';
import { registerStageKind, type SpecIssue } from '../kinds.js';

/**
 * `evaluate`: measures a judge on a multiple-choice preference dataset (VL-RewardBench or the
 * generic mc-jsonl format), or on an upstream stage's mc-items. Example:
 *
 *   - id: eval
 *     uses: evaluate
 *     with: { dataset: vlrb, judge: my-judge, positions: swap, samples: 3 }
 *   - id: eval-synth
 *     uses: evaluate
 *     needs: [synth]
 *     with: { dataset: { from: synth }, judge: my-judge }
 *   - id: eval-trained
 *     uses: evaluate
 *     needs: [serve-trained, synth]
 *     with: { dataset: { from: synth }, judge: { from: serve-trained } }
 */
export const evaluateParams = z
  .object({
    /** mc-items: a dataset under `datasets:`, or `{ from: <stage> }` (an upstream stage's artifact). */
    dataset: dataRefSchema,
    /** Name of the judge endpoint under `endpoints:`, or `{ from: <serve stage> }` (a model that stage serves). */
    judge: z.union([z.string().min(1), z.strictObject({ from: z.string().min(1) })]),
    /** swap: every cyclic shift of the candidates (both orders for K=2); random: one seeded order per item; none: as stored. */
    positions: z.enum(['swap', 'random', 'none']).default('swap'),
    /** Judge samples per item and order; the majority vote decides. */
    samples: z.number().int().min(1).max(64).default(1),
    labels: z.enum(['letters', 'numbers']).default('letters'),
    /** Prompt template with {query}, {candidates}, {k}, {labels}, … (default: MR. Judge style). */
    template: z.string().optional(),
    /** Optional system message. */
    system: z.string().optional(),
    temperature: z.number().min(0).max(2).default(0.6),
    top_p: z.number().gt(0).max(1).optional(),
    max_tokens: z.number().int().positive().default(2048),
    /** Policy of the headline accuracy for unparseable outputs (both are always stored). */
    headline_policy: z.enum(['excluded', 'wrong']).default('excluded'),
    /** Bootstrap resamples for the 95% CIs (0: none). */
    bootstrap: z.number().int().min(0).max(100_000).default(1000),
    /** About this many requests per chunk, and chunks in inference at once. */
    chunk_size: z.number().int().positive().default(500),
    parallel: z.number().int().positive().max(64).default(2),
    /**
     * The stage fails when more than this share of its requests failed (after their retries);
     * its metrics are still stored. Absent: 0.02. (Optional, not defaulted here: existing specs
     * keep their hash.)
     */
    max_failed_share: z.number().min(0).max(1).optional(),
    /**
     * A regular expression an output in a trained judge's answer format matches, e.g.
     * `<answer>\\s*[A-D]\\s*</answer>`: adds `format_rate` and `parseable_rate` with 95% Wilson
     * intervals (shown by `judgeflow results`). Optional.
     */
    answer_format: z.string().min(1).optional(),
  })
  .strict();
export type EvaluateParams = z.infer<typeof evaluateParams>;

/** The name a stage's requests are filed under: the endpoint's, or the serve stage's id. */
export function judgeEndpointName(params: Pick<EvaluateParams, 'judge'>): string {
  return typeof params.judge === 'string' ? params.judge : params.judge.from;
}

/** `max_failed_share` when a spec leaves it out. */
export const DEFAULT_MAX_FAILED_SHARE = 0.02;

registerStageKind({
  kind: 'evaluate',
  description: 'judge evaluation on VL-RewardBench / multiple-choice data: swapped positions, majority vote, metrics with bootstrap CIs',
  workflowType: 'evaluateStage',
  params: evaluateParams,
  endpoints: (p) => (typeof p.judge === 'string' ? [p.judge] : []),
  consumes: (p) => [
    { param: 'dataset', ref: p.dataset, kind: 'mc-items' },
    ...(typeof p.judge === 'object' ? [{ param: 'judge', ref: p.judge, kind: 'endpoint' as const }] : []),
  ],
  produces: {},
  check({ index, params }) {
    const issues: SpecIssue[] = [];
    if (params.answer_format !== undefined) {
      try {
        new RegExp(params.answer_format);
      } catch (err) {
        issues.push({ path: `stages[${index}].with.answer_format`, message: `not a regular expression: ${(err as Error).message}` });
      }
    }
    if (params.template !== undefined) {
      try {
        validateJudgeTemplate(params.template);
      } catch (err) {
        if (!(err instanceof JudgeTemplateError)) throw err;
        issues.push({ path: `stages[${index}].with.template`, message: err.message });
      }
    }
    return issues;
  },
});
