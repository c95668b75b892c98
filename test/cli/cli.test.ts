import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { relative } from 'node:path';
import { REPO, experimentRowCounts, openTestDb, startTestWorker, uniqueName } from '../helpers/env.js';
import { runCli } from '../helpers/cli.js';
import { writeSpec } from '../helpers/spec.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import type { DbHandle } from '../../db/client.js';
import type { RunningWorker } from '../../worker.js';

const DATA = `${REPO}/data/vl-rewardbench/data.jsonl`;
let db: DbHandle;
let sim: SimHandle;

beforeAll(async () => {
  db = await openTestDb();
  sim = await startSimulator({ seed: 1, truth: DATA, models: { judge: { behaviour: 'judge', accuracy: 0.8 } } });
});
afterAll(async () => {
  await sim?.close();
  await db?.close();
});

function evalSpec(name: string, url: string) {
  return {
    name,
    endpoints: { judge: { base_url: url, model: 'judge', concurrency: 16 } },
    datasets: { vlrb: { path: DATA, limit: 40 } },
    stages: [
      { id: 'eval', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge', bootstrap: 100 } },
      { id: 'eval-again', uses: 'evaluate', needs: ['eval'], with: { dataset: 'vlrb', judge: 'judge', positions: 'random', bootstrap: 100 } },
    ],
  };
}

describe('judgeflow CLI', () => {
  it('prints help and exits 0; an unknown command exits 2', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/run <name\|path>/);
    const bad = await runCli(['frobnicate']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown command "frobnicate"/);
  });

  const badSpecs: [string, (s: ReturnType<typeof evalSpec>) => unknown, RegExp][] = [
    ['a cycle', (s) => (((s.stages[0] as { needs?: string[] }).needs = ['eval-again']), s), /stages\[0\]\.needs: cycle: eval -> eval-again -> eval/],
    [
      'an unknown stage kind',
      (s) => ((s.stages[1]!.uses = 'evaluation'), s),
      /stages\[1\]\.uses: unknown stage kind "evaluation"; allowed: ([a-z-]+, )*evaluate\b/,
    ],
    ['a dangling need', (s) => ((s.stages[1]!.needs = ['evl']), s), /stages\[1\]\.needs\[0\]: needs unknown stage "evl"/],
    [
      'a field of the wrong type',
      (s) => (((s.stages[0]!.with as Record<string, unknown>).samples = 'three'), s),
      /stages\[0\]\.with\.samples: .*expected number/i,
    ],
    ['an undefined endpoint', (s) => (((s.stages[0]!.with as Record<string, unknown>).judge = 'judg'), s), /stages\[0\]\.with: endpoint "judg" is not defined/],
    ['a missing dataset file', (s) => ((s.datasets.vlrb.path = '/nonexistent/data.jsonl'), s), /datasets\.vlrb\.path: file not found/],
  ];
  for (const [what, mutate, pattern] of badSpecs) {
    it(`refuses ${what} before anything starts: exit 2, file and path named, no rows`, async () => {
      const name = uniqueName('bad');
      const path = writeSpec(mutate(evalSpec(name, sim.url)));
      const before = await experimentRowCounts(db, name);
      const res = await runCli(['run', path]);
      expect(res.code).toBe(2);
      expect(res.stderr).toContain(relative(REPO, path));
      expect(res.stderr).toMatch(pattern);
      expect(await experimentRowCounts(db, name)).toEqual(before);
      expect(before).toEqual({ e: 0, r: 0, s: 0 });
    });
  }

  it('refuses a dataset with no valid row before launch', async () => {
    const bad = writeSpec('{"id": "x", "query": "q"}\n{"broken json\n', 'bad.jsonl');
    const spec = evalSpec(uniqueName('empty'), sim.url);
    (spec.datasets.vlrb as { path: string; format?: string }) = { path: bad, format: 'vl-rewardbench' };
    const res = await runCli(['run', writeSpec(spec)]);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/datasets\.vlrb: .*no valid/i);
  });

  it('refuses a bad --set and a bad flag with exit 2', async () => {
    const path = writeSpec(evalSpec(uniqueName('flags'), sim.url));
    const a = await runCli(['run', path, '--set', 'stages.nope.with.samples=2']);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/"nope" is neither an index nor an id/);
    const b = await runCli(['run', path, '--frobnicate']);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/frobnicate/);
  });

  describe('with a worker', () => {
    const tq = uniqueName('cli');
    let worker: RunningWorker;
    beforeAll(async () => {
      worker = await startTestWorker(tq);
    });
    afterAll(async () => {
      await worker?.shutdown();
    });

    it('runs an experiment to its results table (exit 0), attaches on a second launch, lists and shows it', async () => {
      const name = uniqueName('cli-eval');
      const path = writeSpec(evalSpec(name, sim.url));
      const env = { JUDGEFLOW_TASK_QUEUE: tq };
      const first = await runCli(['run', path], env);
      expect(first.stderr).toMatch(/started/);
      expect(first.code).toBe(0);
      expect(first.stdout).toMatch(/results of run/);
      expect(first.stdout).toMatch(/eval-again\s+40\/40\s+\d+\.\d \[/);
      // No endpoint has a price: no cost column.
      expect(first.stdout).toMatch(/out tok\s+requests\s*\n/);
      const runId = /run (\S+): started/.exec(first.stderr)![1]!;

      const sent = sim.stats().requests;
      const second = await runCli(['run', path, '--json'], env);
      expect(second.code).toBe(0);
      expect(JSON.parse(second.stdout.trim().split('\n').at(-1)!)).toMatchObject({ runId, status: 'succeeded' });
      expect(sim.stats().requests).toBe(sent);

      const list = await runCli(['list', '--json'], env);
      const runs = JSON.parse(list.stdout) as { id: string; status: string }[];
      expect(runs.filter((r) => r.id === runId)).toEqual([expect.objectContaining({ status: 'succeeded' })]);

      const status = await runCli(['status', runId, '--json'], env);
      const progress = JSON.parse(status.stdout);
      expect(progress.stages.map((s: { id: string; status: string; done: number }) => [s.id, s.status, s.done])).toEqual([
        ['eval', 'succeeded', 80],
        ['eval-again', 'succeeded', 40],
      ]);
      const results = await runCli(['results', runId, '--json'], env);
      const metrics = JSON.parse(results.stdout) as { stageId: string; metric: string; scope: string; policy: string; value: number }[];
      const acc = metrics.find((m) => m.stageId === 'eval' && m.metric === 'accuracy' && m.scope === 'overall' && m.policy === 'excluded');
      expect(acc!.value).toBeGreaterThan(0.5);
    });

    it('a wrong endpoint fails the run at once with a clear message (exit 1)', async () => {
      const spec = evalSpec(uniqueName('badmodel'), sim.url);
      spec.endpoints.judge.model = 'no-such-model';
      const res = await runCli(['run', writeSpec(spec)], { JUDGEFLOW_TASK_QUEUE: tq });
      expect(res.code).toBe(1);
      expect(res.stdout + res.stderr).toMatch(/model "no-such-model" is not served/);
    });
  });
});
