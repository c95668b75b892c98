/**
 * The main job's numbers stay what the README shows: `experiments/vlrb-judges.yaml` with its own
 * simulator config, evaluated from the mc-items artifact imported at launch, printed by
 * `judgeflow results`, compared line by line with the table committed in README.md.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { launchRun } from '../../cli/launch.js';
import { printRunResults } from '../../cli/commands/results.js';
import type { Connected } from '../../cli/connect.js';
import type { DbHandle } from '../../db/client.js';
import { loadSimConfig } from '../../sim/config.js';
import type { SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { loadSpec } from '../../spec/load.js';
import { REPO, uniqueName } from '../helpers/env.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

const TQ = uniqueName('readme');
let db: DbHandle;
let sim: SimHandle;
let client: Client;
let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack(TQ, loadSimConfig(join(REPO, 'experiments', 'sim', 'vlrb-judges.yaml')));
  ({ db, sim, client } = stack);
});
afterAll(() => stack?.close());

describe('README main-job table', () => {
  it('vlrb-judges prints the rows the README shows', async () => {
    const loaded = await loadSpec('vlrb-judges', { cwd: REPO, sets: [`endpoints.judge-80.base_url=${sim.url}`, `endpoints.judge-first.base_url=${sim.url}`] });
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
    await client.workflow.getHandle(runId).result();
    const lines: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => void lines.push(...args.map(String).join(' ').split('\n')));
    try {
      await printRunResults({ db } as unknown as Connected, runId);
    } finally {
      log.mockRestore();
    }
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8').split('\n');
    // The main job's table: the eval-judge-80 row and the row under it (judge-data has its own table).
    const at = readme.findIndex((l) => /^eval-judge-80\s/.test(l));
    const expected = readme.slice(at, at + 2);
    expect(expected[1]).toMatch(/^eval-judge-first\s/);
    const printed = lines.filter((l) => /^eval-judge-(80|first)\s/.test(l));
    expect(printed).toEqual(expected);
  }, 300_000);
});
