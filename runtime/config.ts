/**
 * Where the local stack lives and which services it uses, read once from the environment.
 *
 * Every field has a default, so `judgeflow` works with no configuration: an embedded Postgres and
 * a Temporal dev server are started under `<cwd>/.judgeflow`. Setting `DATABASE_URL` or
 * `TEMPORAL_ADDRESS` switches the matching service to one you run yourself.
 */
import { resolve } from 'node:path';
import { z } from 'zod';

export interface RuntimeConfig {
  /** Data, logs and pid records of the local stack. Env `JUDGEFLOW_STATE_DIR`, default `<cwd>/.judgeflow`. */
  stateDir: string;
  /** An existing Postgres database to use instead of the embedded one. Env `DATABASE_URL`. */
  databaseUrl?: string;
  /** An existing Temporal frontend (`host:port`) to use instead of the dev server. Env `TEMPORAL_ADDRESS`. */
  temporalAddress?: string;
  /** Temporal namespace. Env `TEMPORAL_NAMESPACE`, default `default`. */
  namespace: string;
  /** Task queue the worker polls and runs are started on. Env `JUDGEFLOW_TASK_QUEUE`, default `judgeflow`. */
  taskQueue: string;
  /** Port of the embedded Postgres (127.0.0.1). Env `JUDGEFLOW_PG_PORT`, default 54329. */
  pgPort: number;
  /** gRPC port of the Temporal dev server (127.0.0.1). Env `JUDGEFLOW_TEMPORAL_PORT`, default 7239. */
  temporalPort: number;
  /** Web UI port of the Temporal dev server; 0 runs it headless. Env `JUDGEFLOW_TEMPORAL_UI_PORT`, default 8239. */
  temporalUiPort: number;
  /** The `temporal` CLI binary to run the dev server with. Env `TEMPORAL_CLI_PATH`; default: searched (see temporal-cli.ts). */
  temporalCliPath?: string;
}

/** A configuration value that cannot be used; the message names the variable and the fix. */
export class RuntimeConfigError extends Error {
  override readonly name = 'RuntimeConfigError';
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
  }
}

export const DEFAULTS = {
  namespace: 'default',
  taskQueue: 'judgeflow',
  pgPort: 54329,
  temporalPort: 7239,
  temporalUiPort: 8239,
} as const;

const port = (allowZero: boolean) =>
  z.coerce
    .number({ error: 'expected a number' })
    .int({ error: 'expected a whole number' })
    .min(allowZero ? 0 : 1, { error: `expected ${allowZero ? '0' : '1'}–65535` })
    .max(65535, { error: `expected ${allowZero ? '0' : '1'}–65535` });

const postgresUrl = z.string().refine(
  (s) => {
    try {
      const u = new URL(s);
      return (u.protocol === 'postgres:' || u.protocol === 'postgresql:') && u.hostname !== '';
    } catch {
      // not a URL at all: reported by the refinement's message
      return false;
    }
  },
  { error: 'expected postgres://user:password@host:port/database' },
);

const hostPort = z.string().regex(/^[^\s/:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, { error: 'expected host:port, e.g. 127.0.0.1:7233' });

const name = z
  .string()
  .min(1, { error: 'expected a non-empty name' })
  .regex(/^[A-Za-z0-9._-]+$/, { error: 'expected letters, digits, ".", "_" or "-"' });

interface Field<T> {
  env: string;
  key: keyof RuntimeConfig;
  schema: z.ZodType<T>;
  fix: string;
}

const FIELDS: Field<unknown>[] = [
  { env: 'JUDGEFLOW_STATE_DIR', key: 'stateDir', schema: z.string().min(1), fix: 'set it to a directory path or unset it to use ./.judgeflow' },
  { env: 'DATABASE_URL', key: 'databaseUrl', schema: postgresUrl, fix: 'set it to a PostgreSQL URL or unset it to run the embedded Postgres' },
  { env: 'TEMPORAL_ADDRESS', key: 'temporalAddress', schema: hostPort, fix: 'set it to host:port of a Temporal frontend or unset it to run the dev server' },
  { env: 'TEMPORAL_NAMESPACE', key: 'namespace', schema: name, fix: `set it to a namespace name or unset it to use "${DEFAULTS.namespace}"` },
  { env: 'JUDGEFLOW_TASK_QUEUE', key: 'taskQueue', schema: name, fix: `set it to a task queue name or unset it to use "${DEFAULTS.taskQueue}"` },
  { env: 'JUDGEFLOW_PG_PORT', key: 'pgPort', schema: port(false), fix: `set it to a free TCP port or unset it to use ${DEFAULTS.pgPort}` },
  { env: 'JUDGEFLOW_TEMPORAL_PORT', key: 'temporalPort', schema: port(false), fix: `set it to a free TCP port or unset it to use ${DEFAULTS.temporalPort}` },
  {
    env: 'JUDGEFLOW_TEMPORAL_UI_PORT',
    key: 'temporalUiPort',
    schema: port(true),
    fix: `set it to a free TCP port (0 = no Web UI) or unset it to use ${DEFAULTS.temporalUiPort}`,
  },
  {
    env: 'TEMPORAL_CLI_PATH',
    key: 'temporalCliPath',
    schema: z.string().min(1),
    fix: 'set it to the path of the `temporal` binary or unset it to search for one',
  },
];

/** The variable a config key is read from (for error messages that tell the user what to change). */
export function envVarFor(key: keyof RuntimeConfig): string {
  const field = FIELDS.find((f) => f.key === key);
  if (!field) throw new Error(`no environment variable for config key ${key}`);
  return field.env;
}

/**
 * Reads the runtime configuration from `env` (empty strings count as unset), then applies
 * `overrides` (e.g. from CLI flags). Throws `RuntimeConfigError` naming the variable on a bad value.
 */
export function loadRuntimeConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<RuntimeConfig> = {}): RuntimeConfig {
  const raw: Record<string, unknown> = {};
  for (const field of FIELDS) {
    const fromOverride = overrides[field.key];
    const value = fromOverride !== undefined ? fromOverride : env[field.env];
    if (value === undefined || value === '') continue;
    const parsed = field.schema.safeParse(value);
    if (!parsed.success) {
      const why = parsed.error.issues.map((i) => i.message).join('; ');
      const shown = field.env === 'DATABASE_URL' ? redactUrl(String(value)) : JSON.stringify(String(value));
      const source = fromOverride !== undefined ? `${field.key} (overriding ${field.env})` : field.env;
      throw new RuntimeConfigError(field.env, `${source}=${shown} is invalid: ${why}; ${field.fix}`);
    }
    raw[field.key] = parsed.data;
  }
  return {
    stateDir: resolve((raw.stateDir as string | undefined) ?? '.judgeflow'),
    ...(raw.databaseUrl !== undefined && { databaseUrl: raw.databaseUrl as string }),
    ...(raw.temporalAddress !== undefined && { temporalAddress: raw.temporalAddress as string }),
    ...(raw.temporalCliPath !== undefined && { temporalCliPath: resolve(raw.temporalCliPath as string) }),
    namespace: (raw.namespace as string | undefined) ?? DEFAULTS.namespace,
    taskQueue: (raw.taskQueue as string | undefined) ?? DEFAULTS.taskQueue,
    pgPort: (raw.pgPort as number | undefined) ?? DEFAULTS.pgPort,
    temporalPort: (raw.temporalPort as number | undefined) ?? DEFAULTS.temporalPort,
    temporalUiPort: (raw.temporalUiPort as number | undefined) ?? DEFAULTS.temporalUiPort,
  };
}

/** A URL safe to print: the password (if any) replaced by `***`. Non-URLs are returned masked. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    // unparseable: it may still hold a secret, so show nothing of it
    return '<unparseable URL>';
  }
}
