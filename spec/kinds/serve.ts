import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { registerStageKind, type SpecIssue } from '../kinds.js';
import { PACKAGE_ROOT } from '../root.js';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The default server: `transformers serve` (OpenAI-compatible) with the model folder preloaded. */
export const DEFAULT_SERVE_COMMAND = ['{python}', '-m', 'transformers.cli.transformers', 'serve', '{model}', '--host', '{host}', '--port', '{port}'];
export const SERVE_PLACEHOLDERS = ['python', 'model', 'host', 'port'] as const;

/**
 * `serve`: makes a model an endpoint for the stages after it (`judge: { from: <this stage> }` in
 * `evaluate`). The model is a `checkpoint` from a `train` stage (`model: { from: train }`) or a
 * folder (`model: { path: … }`, e.g. the base model the checkpoint was trained from). Either a
 * command runs the server (an argv template, started by an activity on the stage's `task_queue`,
 * health-checked at `/v1/models`, restarted elsewhere when its worker dies, stopped when every
 * stage after it has finished or the run ends), or `url` names a server you run yourself.
 * Requests are cached by the model's identity (the checkpoint's digest, or the folder's), never by
 * the server's port, so a re-run against a restarted server is a cache hit. Example:
 *
 *   - id: serve-trained
 *     uses: serve
 *     needs: [train]
 *     with:
 *       model: { from: train }
 *       # production: command: [vllm, serve, '{model}', --port, '{port}']
 *       env: { OMP_NUM_THREADS: '1' }
 */
export const serveParams = z
  .object({
    /** A checkpoint artifact `{ from: <train stage> }`, or a model folder `{ path }` (relative: to the worker's judgeflow checkout). */
    model: z.union([z.strictObject({ from: z.string().min(1), artifact: z.string().min(1).optional() }), z.strictObject({ path: z.string().min(1) })]),
    /** The server's argv (never a shell string). Placeholders: {python} {model} (the folder) {host} {port} (a free port). */
    command: z
      .array(z.string().min(1))
      .min(1)
      .default([...DEFAULT_SERVE_COMMAND]),
    /**
     * A server you run yourself instead of `command`: its base URL ending in /v1. `{model}` in it is
     * replaced by the model's folder. Health-checked once; never started or stopped by judgeflow.
     */
    url: z.string().min(1).optional(),
    /** The model id the server lists at /v1/models and requests name (default: the folder, as transformers serve and vllm name it). */
    served_model: z.string().min(1).optional(),
    /** The interpreter {python} names. */
    python: z.string().min(1).default('python3'),
    /** Host the server binds and the URL names (another worker host reaches it there). */
    host: z.string().min(1).default('127.0.0.1'),
    /** Variables set for the server (e.g. OMP_NUM_THREADS, CUDA_VISIBLE_DEVICES), besides PATH, HOME, LANG. */
    env: z.record(z.string().regex(ENV_NAME), z.string()).default({}),
    /** Seconds the server may take to list its model at /v1/models. */
    startup_timeout_s: z.number().positive().default(600),
    /** Endpoint settings of the requests sent to it (see `endpoints:`). */
    concurrency: z.number().int().positive().max(4096).default(4),
    timeout_s: z.number().positive().default(600),
    max_attempts: z.number().int().min(1).max(50).default(6),
  })
  .strict();
export type ServeParams = z.infer<typeof serveParams>;

/** A model folder as the worker reads it: relative paths resolve against the judgeflow checkout. */
export function modelFolderPath(path: string): string {
  return isAbsolute(path) ? path : resolve(PACKAGE_ROOT, path);
}

registerStageKind({
  kind: 'serve',
  description: 'a checkpoint (or a model folder) as an OpenAI-compatible endpoint for the stages after it; stopped when they finish',
  workflowType: 'serveStage',
  params: serveParams,
  reusable: false,
  consumes: (p) => ('from' in p.model ? [{ param: 'model', ref: p.model, kind: 'checkpoint' }] : []),
  produces: { endpoint: 'endpoint' },
  check({ index, params }) {
    const at = `stages[${index}].with`;
    const issues: SpecIssue[] = [];
    params.command.forEach((arg, j) => {
      for (const m of arg.matchAll(/\{([a-z_]+)\}/g)) {
        if (!(SERVE_PLACEHOLDERS as readonly string[]).includes(m[1]!)) {
          issues.push({ path: `${at}.command[${j}]`, message: `unknown placeholder {${m[1]}}; known: ${SERVE_PLACEHOLDERS.map((p) => `{${p}}`).join(' ')}` });
        }
      }
    });
    if (params.url !== undefined && !/^https?:\/\/[^/]+.*\/v1\/?$/.test(params.url)) {
      issues.push({ path: `${at}.url`, message: `must be an http(s) base URL ending in /v1, e.g. http://gpu-7:8000/v1 (got ${params.url})` });
    }
    if (!params.command.some((a) => a.includes('{port}')) && params.url === undefined) {
      issues.push({ path: `${at}.command`, message: 'must pass {port} to the server (judgeflow picks a free port and health-checks it)' });
    }
    if ('path' in params.model && !existsSync(modelFolderPath(params.model.path))) {
      issues.push({
        path: `${at}.model.path`,
        warning: true,
        message: `no folder ${modelFolderPath(params.model.path)} here (scripts/prepare-smollm2.py prepares SmolLM2); the worker must have it`,
      });
    }
    return issues;
  },
});
