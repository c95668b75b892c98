/**
 * Inputs and outputs of workflows and stage activities. Workflow-safe: types only, plus the
 * signal/query definitions (which the client imports too). Add fields, never repurpose them:
 * running histories must keep decoding.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { ArtifactKind, DataRef, DatasetFormat } from '../spec/artifacts.js';
import type { EndpointSpec } from '../spec/endpoint.js';

export type { ArtifactKind, DataRef, EndpointSpec };

export interface DatasetRef {
  name: string;
  /**
   * Absolute path to the data file (easy-vqa: its data folder), resolved at launch. Dropped from
   * the plan once the file is imported (`artifactId`): stages never see host paths.
   */
  path?: string;
  format?: DatasetFormat;
  images?: string;
  limit?: number;
  split?: string;
  columns?: { id?: string; image?: string; question?: string; answer?: string };
  /**
   * The artifact the file was imported into at launch (stages read it, never the file). Absent in
   * plans from before artifacts: the stage then imports the file itself.
   */
  artifactId?: number;
}

/** An artifact a stage produced: its id in `artifacts` and its kind. */
export interface ArtifactRef {
  id: number;
  kind: ArtifactKind;
}

/** One stage as the engine runs it: resolved at launch, stored on the run row. */
export interface StagePlan {
  id: string;
  kind: string;
  workflowType: string;
  needs: string[];
  params: unknown;
  taskQueue?: string;
  /** Endpoints this stage calls, by spec name (config only: keys stay in the environment). */
  endpoints: Record<string, EndpointSpec>;
  datasets: Record<string, DatasetRef>;
  /** The kind's version (stage reuse compares it); absent in plans from before reuse. */
  version?: number;
  /** false: never reuse another run's stage for this one (spec `reuse: false`, replayed stages). */
  reuse?: boolean;
}

export interface ExperimentInput {
  runId: string;
}

export interface ExperimentOutput {
  runId: string;
  status: 'succeeded';
  stages: Record<string, StageOutput>;
}

/** References a stage produced (ids, counts): never the data itself. */
export interface StageOutput {
  ref: Record<string, string | number | boolean | null>;
  items?: { total: number; done: number; failed: number };
  /** Artifacts the stage produced, by name (the kind's `produces`). */
  artifacts?: Record<string, ArtifactRef>;
}

export interface StageInput<P = unknown> {
  runId: string;
  stageId: string;
  kind: string;
  seed: number;
  params: P;
  endpoints: Record<string, EndpointSpec>;
  datasets: Record<string, DatasetRef>;
  /** Outputs of the stages this one needs, by stage id. */
  inputs: Record<string, StageOutput>;
  /** Task queue the stage's activities run on. */
  taskQueue?: string;
}

export interface RunPlan {
  runId: string;
  seed: number;
  stages: StagePlan[];
  /** Stages already succeeded in an earlier execution of this run: kept, not re-run. */
  succeeded: Record<string, StageOutput>;
}

export type StageStatusName = 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped' | 'cancelled';

export interface StageProgress {
  id: string;
  kind: string;
  status: StageStatusName;
  done: number;
  total: number;
  failed: number;
  startedAt?: number;
  finishedAt?: number;
  etaSeconds?: number;
  error?: string;
  /** `<run>/<stage>` whose artifacts this stage reused instead of running. */
  reusedFrom?: string;
}

export interface RunProgress {
  runId: string;
  status: 'running' | 'succeeded' | 'failed' | 'cancelled';
  stages: StageProgress[];
}

export interface StageProgressUpdate {
  stageId: string;
  done: number;
  total: number;
  failed: number;
}

/**
 * The experiment workflow's view of its stages: status, errors, and final counts. A running stage's
 * live counts are its own `stageProgress` query (cli/live-progress.ts merges both).
 */
export const progressQuery = defineQuery<RunProgress>('progress');
/** A stage workflow's live counts (workflow id `<run id>/<stage id>`); registered at its first report. */
export const stageProgressQuery = defineQuery<StageProgressUpdate>('stageProgress');
/** Sent by stages of histories begun before the 'progress-by-query' patch; still handled. */
export const stageProgressSignal = defineSignal<[StageProgressUpdate]>('stageProgress');
