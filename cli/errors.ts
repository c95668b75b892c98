/** Exit codes of every judgeflow command. */
export const EXIT = { ok: 0, runFailed: 1, usage: 2 } as const;

/** Bad flags or arguments: printed with the command's usage, exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A configuration problem (env, servers): printed as is, exit 2. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}
