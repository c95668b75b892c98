import type { z } from 'zod';
import type { ExperimentSpec } from './schema.js';

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
  /** Temporal workflow type of the stage's child workflow. */
  workflowType: string;
  params: S;
  /** Names of spec endpoints the stage calls (health-checked at run start). */
  endpoints?: (params: z.output<S>) => string[];
  /** Names of spec datasets the stage reads. */
  datasets?: (params: z.output<S>) => string[];
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
