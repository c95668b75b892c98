import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { DatasetError, loadDataset } from '../../activities/datasets/mc.js';
import { JudgeTemplateError, validateJudgeTemplate } from '../../activities/evaluate/prompt.js';
import { registerStageKind, type SpecIssue } from '../kinds.js';

/**
 * `evaluate`: measures a judge on a multiple-choice preference dataset (VL-RewardBench or the
 * generic mc-jsonl format). Example:
 *
 *   - id: eval
 *     uses: evaluate
 *     with: { dataset: vlrb, judge: my-judge, positions: swap, samples: 3 }
 */
export const evaluateParams = z
  .object({
    /** Name of a dataset under `datasets:`. */
    dataset: z.string().min(1),
    /** Name of the judge endpoint under `endpoints:`. */
    judge: z.string().min(1),
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
  })
  .strict();
export type EvaluateParams = z.infer<typeof evaluateParams>;

registerStageKind({
  kind: 'evaluate',
  description: 'judge evaluation on VL-RewardBench / multiple-choice data: swapped positions, majority vote, metrics with bootstrap CIs',
  workflowType: 'evaluateStage',
  params: evaluateParams,
  endpoints: (p) => [p.judge],
  datasets: (p) => [p.dataset],
  async check({ spec, index, params, specDir }) {
    const issues: SpecIssue[] = [];
    if (params.template !== undefined) {
      try {
        validateJudgeTemplate(params.template);
      } catch (err) {
        if (!(err instanceof JudgeTemplateError)) throw err;
        issues.push({ path: `stages[${index}].with.template`, message: err.message });
      }
    }
    const ds = spec.datasets[params.dataset];
    if (ds) {
      const path = isAbsolute(ds.path) ? ds.path : resolve(specDir, ds.path);
      try {
        // A dataset with no valid row is refused before launch; rows it will skip (an unreadable or
        // undownloadable image among them) are warned about. Images are read here and again by the
        // stage's import: the check runs in the CLI, the import in a worker, maybe on another host.
        const loaded = await loadDataset({ path, format: ds.format, imagesDir: ds.images ? resolve(specDir, ds.images) : undefined, limit: ds.limit });
        if (loaded.issues.length > 0) {
          const shown = loaded.issues.slice(0, 5).map((i) => `line ${i.line}: ${i.reason}`).join('; ');
          const more = loaded.issues.length > 5 ? `; … ${loaded.issues.length - 5} more (stored with the dataset)` : '';
          issues.push({ path: `datasets.${params.dataset}`, warning: true, message: `${loaded.issues.length} row(s) skipped: ${shown}${more}` });
        }
      } catch (err) {
        if (!(err instanceof DatasetError)) throw err;
        issues.push({ path: `datasets.${params.dataset}`, message: err.message });
      }
    }
    return issues;
  },
});
