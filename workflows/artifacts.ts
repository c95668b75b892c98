/** Resolving a stage's data parameters to artifact ids (workflow-safe: no I/O). */
import { ApplicationFailure } from '@temporalio/workflow';
import type { ArtifactKind, DataRef, DatasetRef, EndpointSpec, StageInput } from './types.js';

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

/**
 * The endpoint a `serve` stage hands over (`judge: { from: <serve stage> }`). Its base URL is a
 * placeholder: activities read the server's current URL from Postgres when they start.
 */
export function servedEndpoint(input: StageInput, from: string): EndpointSpec {
  resolveDataRef(input, { from }, 'endpoint');
  const ref = input.inputs[from]!.ref;
  return {
    base_url: `http://served.invalid/${from}/v1`,
    model: String(ref.model),
    concurrency: Number(ref.concurrency),
    revision: '',
    timeout_s: Number(ref.timeout_s),
    max_attempts: Number(ref.max_attempts),
    max_retry_after_s: 30,
    // A server restarted elsewhere is found sooner: the activity fails (retryably) and reads the new URL.
    down_after_s: 20,
    served: { runId: input.runId, stageId: from, identity: String(ref.identity) },
  };
}
