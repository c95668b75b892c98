/** Resolving a stage's data parameters to artifact ids (workflow-safe: no I/O). */
import { ApplicationFailure } from '@temporalio/workflow';
import type { ArtifactKind, DataRef, DatasetRef, StageInput } from './types.js';

/**
 * What a data parameter names: a file dataset (its artifact id when imported at launch) or an
 * upstream stage's artifact of `kind` (by name, or its only one of that kind).
 */
export function resolveDataRef(input: StageInput, ref: DataRef, kind: ArtifactKind): { dataset: DatasetRef; artifactId?: number } | { artifactId: number } {
  if (typeof ref === 'string') {
    const dataset = input.datasets[ref];
    if (!dataset) throw ApplicationFailure.nonRetryable(`stage ${input.stageId}: dataset "${ref}" is not in its plan`, 'SpecError');
    return dataset.artifactId === undefined ? { dataset } : { dataset, artifactId: dataset.artifactId };
  }
  const out = input.inputs[ref.from];
  const produced = Object.entries(out?.artifacts ?? {}).filter(([name, a]) => a.kind === kind && (ref.artifact === undefined || name === ref.artifact));
  if (produced.length !== 1) {
    throw ApplicationFailure.nonRetryable(
      `stage ${input.stageId}: stage "${ref.from}" handed over ${produced.length} ${kind} artifact(s)${ref.artifact ? ` named "${ref.artifact}"` : ''}, expected one`,
      'SpecError',
    );
  }
  return { artifactId: produced[0]![1].id };
}
