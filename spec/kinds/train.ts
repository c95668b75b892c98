import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { dataRefSchema } from '../artifacts.js';
import { registerStageKind, type SpecIssue } from '../kinds.js';
import { PACKAGE_ROOT } from '../root.js';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Where the job runs. Each backend looks the job's key up before submitting (idempotent). */
export const trainBackendSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('process'),
    /** Folder of the job folders (default: `$JUDGEFLOW_STATE_DIR/jobs`, else `.judgeflow/jobs` in the worker's folder). */
    dir: z.string().min(1).optional(),
  }),
  z.strictObject({
    type: z.literal('ray'),
    /** The Ray dashboard (Jobs REST API) of the cluster's head. */
    address: z.string().url().default('http://127.0.0.1:8265'),
    /** CPUs Ray reserves for the trainer (entrypoint_num_cpus). */
    num_cpus: z.number().positive().optional(),
  }),
  z.strictObject({
    type: z.literal('slurm'),
    /** Put before every sbatch/squeue/scontrol/scancel/tail, e.g. [ssh, login-node]. */
    prefix: z.array(z.string().min(1)).default([]),
    partition: z.string().min(1).optional(),
    cpus: z.number().int().positive().optional(),
    /** --mem, e.g. 6G. */
    mem: z.string().min(1).optional(),
    /** --time, e.g. 02:00:00. */
    time: z.string().min(1).optional(),
  }),
  z.strictObject({
    type: z.literal('openai'),
    /** An OpenAI-compatible fine-tuning API; the job's model is `base_model`. */
    base_url: z.string().url(),
    /** NAME of the environment variable holding the key. */
    api_key_env: z.string().regex(ENV_NAME).optional(),
  }),
]);
export type TrainBackendSpec = z.infer<typeof trainBackendSchema>;

/** The default trainer: TRL SFT (trainers/sft.py) reading the job's config file. */
export const DEFAULT_TRAIN_COMMAND = ['{python}', '{trainers}/sft.py', '--config', '{config}'];
export const TRAIN_PLACEHOLDERS = ['python', 'trainers', 'config', 'data', 'base_model', 'output', 'metrics'] as const;

/**
 * `train` (METHOD.md §4): runs a trainer on an upstream `sft-set` (its `trl` JSONL export) on a
 * backend, waits for it durably (a timer loop: no worker slot is held while it trains), and records
 * the checkpoint as an artifact with its lineage. Example:
 *
 *   - id: train
 *     uses: train
 *     needs: [distill]
 *     with:
 *       data: { from: distill }
 *       base_model: ../.cache/models/smollm2-135m-instruct
 *       backend: { type: ray, address: http://127.0.0.1:8265 }
 *       hyperparams: { max_steps: 8, per_device_train_batch_size: 2, learning_rate: 5.0e-5 }
 */
export const trainParams = z
  .object({
    /** sft-set: `{ from: <stage> }` (or a dataset that imports into one). */
    data: dataRefSchema,
    /** The base model: a folder for local trainers (relative: to the worker's judgeflow checkout); a model name for `openai`. */
    base_model: z.string().min(1),
    backend: trainBackendSchema.default({ type: 'process' }),
    /**
     * The trainer's argv (never a shell string). Placeholders (`{name}`, lowercase; other braces stay as written): {python} {trainers} (the repo's
     * trainers/ folder) {config} (a JSON file with data, base_model, output, metrics, hyperparams)
     * {data} {base_model} {output} {metrics}.
     */
    command: z
      .array(z.string().min(1))
      .min(1)
      .default([...DEFAULT_TRAIN_COMMAND]),
    /** The Python interpreter {python} names. */
    python: z.string().min(1).default('python3'),
    /** Passed to the trainer in its config file (TRL SFTConfig fields for trainers/sft.py). */
    hyperparams: z.record(z.string(), z.union([z.number(), z.string(), z.boolean()])).default({}),
    /** Names of worker environment variables the job may see (besides PATH, HOME, LANG). */
    env: z.array(z.string().regex(ENV_NAME)).default([]),
    /** Folder of the jobs' outputs (default: `$JUDGEFLOW_STATE_DIR/train`, else `.judgeflow/train`). */
    output_dir: z.string().min(1).optional(),
    /** Seconds between status checks (a completion signal checks at once). */
    poll_s: z.number().positive().default(5),
    /** The job is cancelled and the stage fails after this many seconds. */
    timeout_s: z
      .number()
      .positive()
      .default(24 * 3600),
    /** A job the backend lost (a restarted Ray head, a vanished process): fail, or resubmit. */
    on_lost: z.enum(['fail', 'resubmit']).default('fail'),
    /** Resubmissions allowed under `on_lost: resubmit`. */
    max_resubmits: z.number().int().min(0).max(100).default(1),
    /** Bytes of the log's end kept on the job's row and put in a failure's error. */
    log_tail_bytes: z.number().int().positive().max(64_000).default(4000),
  })
  .strict();
export type TrainParams = z.infer<typeof trainParams>;

/** A base model folder as the worker reads it: relative paths resolve against the judgeflow checkout. */
export function baseModelPath(baseModel: string): string {
  return isAbsolute(baseModel) ? baseModel : resolve(PACKAGE_ROOT, baseModel);
}

registerStageKind({
  kind: 'train',
  description: 'a trainer (TRL SFT by default) on an sft-set, on a process / Ray / Slurm / OpenAI fine-tuning backend; waits durably; checkpoint artifact',
  workflowType: 'trainStage',
  params: trainParams,
  consumes: (p) => [{ param: 'data', ref: p.data, kind: 'sft-set' }],
  produces: { checkpoint: 'checkpoint' },
  check({ index, params }) {
    const at = `stages[${index}].with`;
    const issues: SpecIssue[] = [];
    params.command.forEach((arg, j) => {
      for (const m of arg.matchAll(/\{([a-z_]+)\}/g)) {
        if (!(TRAIN_PLACEHOLDERS as readonly string[]).includes(m[1]!)) {
          issues.push({ path: `${at}.command[${j}]`, message: `unknown placeholder {${m[1]}}; known: ${TRAIN_PLACEHOLDERS.map((p) => `{${p}}`).join(' ')}` });
        }
      }
    });
    // The folder is read on the worker (relative: in its judgeflow checkout); a launch on another
    // host cannot see it, so a missing folder only warns.
    if (params.backend.type !== 'openai' && !existsSync(baseModelPath(params.base_model))) {
      issues.push({
        path: `${at}.base_model`,
        warning: true,
        message: `no folder ${baseModelPath(params.base_model)} here (scripts/prepare-smollm2.py prepares SmolLM2); the worker must have it`,
      });
    }
    return issues;
  },
});
