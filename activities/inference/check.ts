/**
 * The `checkEndpoints` activity: before a run writes anything, every endpoint must answer
 * `GET {base_url}/models` with the configured key and list the configured model. What the user
 * must fix fails at once (non-retryable, with a message naming the endpoint, the URL and the env
 * var); a server having a bad moment (5xx, timeout) is retried by the activity's retry policy.
 */
import type OpenAI from 'openai';
import { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai';
import type { EndpointSpec } from '../../spec/endpoint.js';
import { EndpointFatalError, networkErrorCode, redirectError, toApplicationFailure } from './errors.js';
import type { InferenceGateway } from './gateway.js';
import { sleep } from './limits.js';
import type { CheckEndpointsInput, CheckEndpointsOutput } from './types.js';

const CONNECT_TRIES = 3;
const CONNECT_RETRY_MS = 300;
const CHECK_TIMEOUT_MS = 15_000;

async function listModels(name: string, endpoint: EndpointSpec, client: OpenAI): Promise<string[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      const page = await client.models.list({ timeout: Math.min(CHECK_TIMEOUT_MS, endpoint.timeout_s * 1000) });
      return page.data.map((m) => m.id);
    } catch (err) {
      if (err instanceof APIConnectionError && !(err instanceof APIConnectionTimeoutError)) {
        if (attempt < CONNECT_TRIES) {
          await sleep(CONNECT_RETRY_MS);
          continue;
        }
        const code = networkErrorCode(err) ?? err.message;
        throw new EndpointFatalError('EndpointUnreachableError', `endpoint "${name}": nothing answers at ${endpoint.base_url} (${code})`, { cause: err });
      }
      if (err instanceof APIError && err.status !== undefined) {
        if (err.status === 401 || err.status === 403) {
          const hint = endpoint.api_key_env
            ? `check the env var ${endpoint.api_key_env}`
            : 'the endpoint needs a key: set api_key_env to the env var holding it';
          throw new EndpointFatalError('EndpointAuthError', `endpoint "${name}" (${endpoint.base_url}): the API key was rejected (${err.status}); ${hint}`, {
            cause: err,
          });
        }
        const redirect = redirectError(name, endpoint.base_url, err);
        if (redirect) throw redirect;
        if (err.status === 404) {
          throw new EndpointFatalError(
            'EndpointConfigError',
            `endpoint "${name}": GET ${endpoint.base_url}/models answered 404; is base_url right (it usually ends in /v1)?`,
            { cause: err },
          );
        }
      }
      // 5xx, timeouts, malformed bodies: a transient fault; the activity's retry policy tries again.
      throw err;
    }
  }
}

export async function checkEndpoints(deps: { gateway: InferenceGateway }, input: CheckEndpointsInput): Promise<CheckEndpointsOutput> {
  const models: Record<string, string[]> = {};
  try {
    await Promise.all(
      Object.entries(input.endpoints).map(async ([name, endpoint]) => {
        // The gateway's own client: the check sees the endpoint as the requests will.
        const served = await listModels(name, endpoint, deps.gateway.client(name, endpoint));
        if (!served.includes(endpoint.model)) {
          throw new EndpointFatalError(
            'EndpointModelNotFoundError',
            `endpoint "${name}": model "${endpoint.model}" is not served at ${endpoint.base_url} (served: ${served.join(', ') || 'none'})`,
          );
        }
        models[name] = served;
        // It answers: a silence the gateway remembers from before (a stage stopped by it) is over.
        deps.gateway.markAnswered(endpoint);
      }),
    );
  } catch (err) {
    if (err instanceof EndpointFatalError) throw toApplicationFailure(err);
    throw err;
  }
  return { ok: true, models };
}
