/** The code version a run records: the checkout's commit, with "-dirty" when a tracked file has uncommitted changes. */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { codeVersion } from '../../cli/launch.js';
import { REPO } from '../helpers/env.js';

describe('codeVersion', () => {
  it('is what `git rev-parse HEAD` and `git status --porcelain` say of this checkout', async () => {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: REPO, encoding: 'utf8' }).trim();
    const head = git('rev-parse', 'HEAD');
    const dirty = git('status', '--porcelain', '--untracked-files=no') !== '';
    expect(await codeVersion()).toBe(dirty ? `${head}-dirty` : head);
  });
});
