/**
 * The training backend seam: one interface over every engine that runs a trainer (a local process,
 * a Ray cluster, Slurm, a hosted fine-tuning API). Submission is idempotent by `key`: `find` looks
 * the key up at the backend first, and `submit` of a key the backend already holds attaches.
 */

/** What to run: the trainer's argv (never a shell string), its folder, its environment. */
export interface TrainJobSpec {
  /** Deterministic from run, stage and attempt; the backend's job name / submission id. */
  key: string;
  argv: string[];
  cwd: string;
  /** Exactly the variables the job sees (the spec's allowlist, resolved on the worker). */
  env: Record<string, string>;
  /** The job's folder: checkpoint, metrics.jsonl and (for local backends) its log live here. */
  outputDir: string;
  /** openai backend: the TRL/OpenAI chat JSONL to upload, the base model, hyper-parameters. */
  trainingFile?: string;
  baseModel?: string;
  hyperparams?: Record<string, unknown>;
  /** openai backend: `metadata.judgeflow_key` carries the key. */
  metadata?: Record<string, string>;
}

export type TrainJobState = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'lost';
export const TERMINAL_STATES: readonly TrainJobState[] = ['succeeded', 'failed', 'cancelled', 'lost'];

export interface TrainJobStatus {
  state: TrainJobState;
  /** The trainer's exit code when the backend knows it. */
  exitCode?: number;
  message?: string;
  /** openai backend: the fine-tuned model's name. */
  fineTunedModel?: string;
}

export interface SubmitResult {
  jobId: string;
  /** true: the backend already held a job under this key (nothing new was started). */
  attached: boolean;
}

export interface TrainBackend {
  readonly name: string;
  /** The job the backend holds under `key`, or undefined. */
  find(key: string): Promise<string | undefined>;
  /** Starts the job, or attaches to the one already under `spec.key`. */
  submit(spec: TrainJobSpec): Promise<SubmitResult>;
  status(jobId: string): Promise<TrainJobStatus>;
  /** The last `maxBytes` of the job's log ('' when there is none yet). */
  logs(jobId: string, maxBytes: number): Promise<string>;
  /** Stops the job; a finished or unknown job is left as is. */
  cancel(jobId: string): Promise<void>;
  /** Metrics lines the backend holds itself (openai events); local backends read metrics.jsonl. */
  metrics?(jobId: string): Promise<Record<string, unknown>[]>;
}

/** A backend refused or failed a call in a way retrying will not fix (bad config, rejected job). */
export class TrainBackendError extends Error {
  override readonly name = 'TrainBackendError';
}

/** Last `maxBytes` of a text, cut at a line start. */
export function tailText(text: string, maxBytes: number): string {
  if (text.length <= maxBytes) return text;
  const cut = text.slice(text.length - maxBytes);
  const nl = cut.indexOf('\n');
  return nl >= 0 && nl < cut.length - 1 ? cut.slice(nl + 1) : cut;
}
