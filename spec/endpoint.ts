import { z } from 'zod';

/**
 * An OpenAI-compatible inference endpoint (vLLM, SGLang, llama.cpp server, OpenAI).
 * The API key never appears in a spec: `api_key_env` names the environment variable holding it.
 */
export const endpointSchema = z
  .object({
    /** Base URL including the version prefix, e.g. http://gpu-7:8000/v1 */
    base_url: z.url({ message: 'must be a URL such as http://127.0.0.1:8000/v1' }),
    /** The served model id, as `GET /v1/models` lists it. */
    model: z.string().min(1),
    /** Name of the env var holding the API key (optional for servers without auth). */
    api_key_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable NAME, e.g. OPENAI_API_KEY (never the key itself)')
      .optional(),
    /** Requests in flight at once, per worker process. */
    concurrency: z.number().int().positive().max(4096).default(16),
    /** Optional requests/minute and tokens/minute limits. */
    rpm: z.number().positive().optional(),
    tpm: z.number().positive().optional(),
    /** Bump when the weights behind the same URL+model change: it is part of the cache key. */
    revision: z.string().default(''),
    /** Per-request timeout, seconds. */
    timeout_s: z.number().positive().default(120),
    /** Attempts per item for transient faults (429, 5xx, timeouts, malformed bodies). */
    max_attempts: z.number().int().min(1).max(50).default(6),
    /** Cap on a server's retry-after, seconds. */
    max_retry_after_s: z.number().positive().default(30),
    /**
     * Seconds without any answer from the server (connections refused or reset, timeouts, and no
     * response of any kind in between) after which the stage stops with EndpointDownError naming
     * the endpoint. Absent: 60. (Optional, not defaulted here: existing specs keep their hash.)
     */
    down_after_s: z.number().positive().max(86_400).optional(),
    /** USD per million tokens, for cost accounting. */
    price: z.object({ input_per_mtok: z.number().nonnegative().default(0), output_per_mtok: z.number().nonnegative().default(0) }).optional(),
  })
  .strict();

/**
 * The endpoint of a `serve` stage, as the stages after it receive it (never written in a spec): its
 * URL is read from Postgres at the start of each activity (the server may have been restarted at
 * another port), and the cache keys on `identity` (the weights' digest) instead of the URL.
 */
export interface ServedEndpointRef {
  runId: string;
  stageId: string;
  identity: string;
}

export type EndpointSpec = z.infer<typeof endpointSchema> & { served?: ServedEndpointRef };

/** `down_after_s` when a spec leaves it out. */
export const DEFAULT_DOWN_AFTER_S = 60;
