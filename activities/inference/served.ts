/** Endpoints of `serve` stages, as the activities that call them see them. */
import { ApplicationFailure } from '@temporalio/common';
import type { Db } from '../../db/client.js';
import type { EndpointSpec } from '../../spec/endpoint.js';

export class ServedEndpointError extends Error {
  override readonly name = 'ServedEndpointError';
}

/**
 * The endpoint a stage's activity should call: a served endpoint's current URL is read from
 * Postgres (the server may have moved since the workflow was given the endpoint).
 */
export async function resolveServedEndpoint(db: Db, endpoint: EndpointSpec): Promise<EndpointSpec> {
  if (!endpoint.served) return endpoint;
  const { runId, stageId } = endpoint.served;
  const row = (
    await db.$client.query<{ state: string; base_url: string | null; error: string | null }>(
      'select state, base_url, error from servers where run_id = $1 and stage_id = $2',
      [runId, stageId],
    )
  ).rows[0];
  if (!row) throw ApplicationFailure.nonRetryable(`stage "${stageId}" of run ${runId} has no server record`, 'EndpointConfigError');
  if ((row.state === 'ready' || row.state === 'external') && row.base_url) return { ...endpoint, base_url: row.base_url };
  if (row.state === 'stopped' || row.state === 'failed') {
    throw ApplicationFailure.nonRetryable(`the server of stage "${stageId}" is ${row.state}${row.error ? `: ${row.error}` : ''}`, 'EndpointUnreachableError');
  }
  // starting / restarting: the activity's retries wait for it.
  throw new ServedEndpointError(`the server of stage "${stageId}" is ${row.state}: retrying until it is ready`);
}
