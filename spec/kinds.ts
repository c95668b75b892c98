import type { z } from 'zod';
import type * as Workflows from '../workflows/index.js';
import type { ArtifactKind, ConsumedData } from './artifacts.js';
import type { ExperimentSpec } from './schema.js';

/**
 * The workflow types a stage kind may name: the stage workflows exported by workflows/index.ts
 * (the worker's workflowsPath). A kind naming anything else does not compile.
 */
export type StageWorkflowType = Exclude<keyof typeof Workflows, 'experimentWorkflow'>;

export interface SpecIssue {
  /** Path inside the spec, e.g. `stages[1].with.judge`. */
  path: string;
  message: string;
  /** A warning is printed at launch but does not stop it (e.g. skipped dataset rows). */
  warning?: boolean;
}

/** What a stage kind's check sees: the whole spec, the stage's index and its parsed params. */
export interface StageCheckContext<P> {
  spec: ExperimentSpec;
  index: number;
  params: P;
  /** Directory of the spec file: relative paths in the spec resolve against it. */
  specDir: string;
}

/**
 * A stage kind: its params schema (the `with:` block), the workflow that runs it, and the
 * cross-references it makes (endpoints, datasets) so the spec is checked before anything starts.
 */
export interface StageKind<S extends z.ZodType = z.ZodType> {
  kind: string;
  description: string;
  /** Temporal workflow type of the stage's child workflow: an export of workflows/index.ts. */
  workflowType: StageWorkflowType;
  /** Bump when the kind's results change for the same params: stage reuse never crosses versions. Default 1. */
  version?: number;
  params: S;
  /** false: the stage is never reused from another run (what it makes lives only with its run, e.g. a server). */
  reusable?: boolean;
  /** Names of spec endpoints the stage calls (health-checked at run start). */
  endpoints?: (params: z.output<S>) => string[];
  /** The stage's data parameters: a dataset name or `{ from: <stage> }`, and the artifact kind each takes. */
  consumes?: (params: z.output<S>) => ConsumedData[];
  /** The artifacts the stage produces, by name (`StageOutput.artifacts` carries their ids). */
  produces?: Record<string, ArtifactKind>;
  /** Static checks beyond the schema: references to endpoints/datasets, files that must exist. */
  check?: (ctx: StageCheckContext<z.output<S>>) => SpecIssue[] | Promise<SpecIssue[]>;
}

const registry = new Map<string, StageKind>();

export function registerStageKind<S extends z.ZodType>(kind: StageKind<S>): void {
  if (registry.has(kind.kind) && registry.get(kind.kind) !== (kind as unknown as StageKind)) {
    throw new Error(`stage kind "${kind.kind}" is registered twice`);
  }
  registry.set(kind.kind, kind as unknown as StageKind);
}

export function getStageKind(kind: string): StageKind | undefined {
  return registry.get(kind);
}

export function stageKindNames(): string[] {
  return [...registry.keys()].sort();
}

/**
 * Registered kinds whose workflow type is not a function exported by `workflows` (the worker's
 * workflowsPath module): such a stage would fail its workflow task forever. A unit test keeps it empty.
 */
export function kindsWithoutWorkflow(workflows: Record<string, unknown>): string[] {
  return [...registry.values()].filter((k) => typeof workflows[k.workflowType] !== 'function').map((k) => `${k.kind} → ${k.workflowType}`);
}
