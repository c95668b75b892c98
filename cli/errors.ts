/**
 * Exit codes of every judgeflow command: 0 success, 1 run failed, 2 usage/spec/config error,
 * 3 lost contact with Temporal while following (the run itself goes on), 130 interrupted (Ctrl-C;
 * the run goes on).
 */
import type { Io } from './io.js';

export const EXIT = { ok: 0, runFailed: 1, usage: 2, lostContact: 3, interrupted: 130 } as const;

/** Bad flags or arguments: printed with the command's usage, exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A configuration problem (env, servers): printed as is, exit 2. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

// gRPC status codes meaning "the server did not answer" (as opposed to "it answered no").
const UNAVAILABLE = 14;
const DEADLINE_EXCEEDED = 4;
const UNKNOWN = 2;

/**
 * True when `err` says the Temporal server could not be reached (down, restarting, network):
 * the client's ServiceError wrapping gRPC UNAVAILABLE / DEADLINE_EXCEEDED, or such a gRPC error.
 */
export function isTemporalUnreachable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (isGrpcError(e)) {
      if (e.code === UNAVAILABLE || e.code === DEADLINE_EXCEEDED) return true;
      // A connection dropped mid-call surfaces as UNKNOWN with the socket error in its details.
      if (e.code === UNKNOWN && /ECONNRESET|ECONNREFUSED|socket|Connection dropped/i.test(e.details ?? '')) return true;
      return false;
    }
    if (!(e instanceof Error)) return false;
  }
  return false;
}

/**
 * A gRPC call's error (as @temporalio/client's isGrpcServiceError sees it), told by its shape so
 * this module loads no Temporal code: `judgeflow kinds` and `--help` stay fast.
 */
function isGrpcError(e: unknown): e is Error & { code: number; details?: string } {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'number' && 'metadata' in e;
}

/** Errors that are the user's to fix (input, configuration, environment): message only, exit 2. */
const USER_ERRORS = new Set([
  'SpecError',
  'RuntimeConfigError',
  'StackError',
  'PortInUseError',
  'TemporalCliNotFoundError',
  'WorkerEnvError',
  'DatasetError',
  'SimConfigError',
  'TruthFileError',
  'JudgeTemplateError',
]);

/**
 * Prints a command's error the way every command reports one and returns its exit code: the
 * user's to fix (input, configuration, environment) as a message with exit 2; Temporal out of
 * reach as exit 3 (no run was stopped); anything else with its stack, exit 1.
 */
export function commandErrorExit(command: string, err: unknown, io: Io): number {
  if (err instanceof UsageError || err instanceof ConfigError || USER_ERRORS.has((err as Error)?.name)) {
    io.err(`judgeflow ${command}: ${(err as Error).message}`);
    return EXIT.usage;
  }
  if (isTemporalUnreachable(err)) {
    // Not a failed run: the server did not answer. Runs go on once it is back.
    io.err(
      `judgeflow ${command}: lost contact with Temporal (${(err as Error).message.split('\n')[0]}); no run was stopped by this. ` +
        'Check TEMPORAL_ADDRESS, or `judgeflow up` for the local stack, then try again.',
    );
    return EXIT.lostContact;
  }
  io.err(`judgeflow ${command}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return EXIT.runFailed;
}
