import { z } from 'zod';
import { DATASET_FORMAT_NAMES } from './artifacts.js';
import { ablationsSchema } from './ablations.js';
import { endpointSchema } from './endpoint.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export const datasetSpecSchema = z
  .object({
    /** Path to the data file, relative to the spec file (easy-vqa: optional, the installed package's data folder). */
    path: z.string().min(1).optional(),
    /** spec/artifacts.ts DATASET_FORMATS; inferred from the file when absent. */
    format: z.enum(DATASET_FORMAT_NAMES).optional(),
    /** easy-vqa: `train` or `test` (default test). */
    split: z.string().min(1).optional(),
    /** hf-parquet: the columns holding id, image, question and answer (defaults: common names). */
    columns: z
      .strictObject({ id: z.string().optional(), image: z.string().optional(), question: z.string().optional(), answer: z.string().optional() })
      .optional(),
    /** Folder the records' image paths resolve against; without it, evaluation is text-only. */
    images: z.string().optional(),
    /** Use only the first N valid items (smoke runs). */
    limit: z.number().int().positive().optional(),
  })
  .strict();
export type DatasetSpec = z.infer<typeof datasetSpecSchema>;

export const stageSpecSchema = z
  .object({
    id: z.string().regex(NAME, 'must start with a letter or digit and use only letters, digits, ".", "_" and "-"'),
    /** The stage kind, from the registry (`judgeflow kinds` lists them). */
    uses: z.string().min(1),
    needs: z.array(z.string()).default([]),
    /** Parameters of the stage kind. */
    with: z.record(z.string(), z.unknown()).default({}),
    /** Temporal task queue for this stage's work (an inference pool); default: the worker's queue. */
    task_queue: z.string().min(1).optional(),
    /**
     * Stage reuse (default true): when an earlier succeeded stage had the same kind version,
     * params, seed, endpoints and input artifacts, this stage takes its artifacts instead of running.
     * `false` always runs it.
     */
    reuse: z.boolean().optional(),
  })
  .strict();

export const experimentSpecSchema = z
  .object({
    name: z.string().regex(NAME, 'must start with a letter or digit and use only letters, digits, ".", "_" and "-"'),
    description: z.string().default(''),
    seed: z.number().int().nonnegative().default(0),
    endpoints: z.record(z.string().regex(NAME), endpointSchema).default({}),
    datasets: z.record(z.string().regex(NAME), datasetSpecSchema).default({}),
    stages: z.array(stageSpecSchema).min(1, 'an experiment needs at least one stage'),
    /**
     * Refuse to launch when a dataset row would be skipped (same as `judgeflow run --strict`).
     * Absent or false: skipped rows are warned about and the run goes on without them. (Optional,
     * not defaulted, so the hash and run id of a spec without it stay what they were.)
     */
    strict: z.boolean().optional(),
    /**
     * Demo and test instrument: `judgeflow run` starts the OpenAI-compatible simulator with this
     * config (path relative to the spec) on 127.0.0.1:port unless something already listens there.
     */
    simulator: z
      .object({ config: z.string().min(1), port: z.number().int().min(1).max(65535).default(8100) })
      .strict()
      .optional(),
    /** Named axes over spec paths; `judgeflow run` launches one run per combination (spec/ablations.ts). */
    ablations: ablationsSchema.optional(),
  })
  .strict();

export type ExperimentSpec = z.infer<typeof experimentSpecSchema>;
export type StageSpec = z.infer<typeof stageSpecSchema>;
