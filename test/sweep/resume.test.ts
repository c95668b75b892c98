/**
 * The sweep's pool is resumable: a run cancelled while the policy is still sampling, then launched
 * again, sends only the samples that have no answer yet (counted at the simulator), and its curve
 * is the one an uninterrupted run gets.
 */
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchRun } from '../../cli/launch.js';
import type { DbHandle } from '../../db/client.js';
import type { SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { uniqueName } from '../helpers/env.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { specFromObject } from '../helpers/spec.js';

const TQ = uniqueName('sweep-resume');
const Q = 30;
const N_MAX = 8;

let db: DbHandle;
let sim: SimHandle;
let client: Client;
let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack(TQ, {
    seed: 12,
    latency: { kind: 'fixed', ms: 40 },
    models: {
      policy: { behaviour: 'policy', accuracy: 0.5, answers: 'easy-vqa:test' },
      judge: { behaviour: 'judge', accuracy: 0.7, think: false },
    },
  });
  ({ db, sim, client } = stack);
});
afterAll(() => stack?.close());

const q = async <T extends Record<string, unknown>>(text: string, params: unknown[] = []) => (await db.pool.query<T>(text, params)).rows;

const spec = (name: string) => ({
  name,
  seed: 4,
  endpoints: {
    // Four in flight at 40 ms: the pool of 240 samples takes about 2.4 s, time to cancel it half-way.
    policy: { base_url: sim.url, model: 'policy', concurrency: 4 },
    judge: { base_url: sim.url, model: 'judge', concurrency: 16 },
  },
  datasets: { easy: { format: 'easy-vqa', split: 'test', limit: Q } },
  stages: [
    {
      id: 'bon',
      uses: 'sweep',
      with: {
        items: 'easy',
        policy: 'policy',
        judge: 'judge',
        n: [1, 2, 4, 8],
        resamples: 2,
        strategies: ['random', { kind: 'knockout', k: 4 }, 'oracle'],
        bootstrap: 0,
      },
    },
  ],
});

/** Policy samples of the run with a succeeded result. */
async function answered(runId: string): Promise<number> {
  const [r] = await q<{ n: number }>(
    `select count(*)::int as n from inference_requests q join inference_results r on r.request_id = q.id
     where q.run_id = $1 and q.stage_id = 'bon' and q.endpoint = 'policy' and r.status = 'succeeded'`,
    [runId],
  );
  return r!.n;
}

async function curve(runId: string): Promise<Map<string, number>> {
  const rows = await q<{ strategy: string; n: number; score: number }>(
    `select p.strategy, p.n, p.score from curve_points p join artifacts a on a.id = p.artifact_id where a.run_id = $1 and p.capability = 'total'`,
    [runId],
  );
  return new Map(rows.map((r) => [`${r.strategy}|${r.n}`, r.score]));
}

describe('sweep resume', () => {
  it('a run cancelled during the pool, launched again, sends only the samples still missing; the curve is the uninterrupted one', async () => {
    const loaded = await specFromObject(spec(uniqueName('resume')));
    const sent0 = sim.stats().byModel.policy ?? 0;
    const aborted0 = sim.stats().aborted;
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
    const handle = client.workflow.getHandle(runId);
    for (let i = 0; i < 400 && (await answered(runId)) < 40; i++) await new Promise((r) => setTimeout(r, 25));
    await handle.cancel();
    await expect(handle.result()).rejects.toBeInstanceOf(WorkflowFailedError);
    // Let requests the cancellation aborted settle before counting what was kept.
    await new Promise((r) => setTimeout(r, 500));
    const kept = await answered(runId);
    expect(kept).toBeGreaterThanOrEqual(40);
    expect(kept).toBeLessThan(Q * N_MAX);
    const sent1 = sim.stats().byModel.policy ?? 0;

    const again = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
    expect(again).toMatchObject({ runId, resumed: true });
    await client.workflow.getHandle(runId).result();
    const sent2 = sim.stats().byModel.policy ?? 0;
    const aborted = sim.stats().aborted - aborted0;
    // Each sample was answered by the simulator once over both launches: only a request the cancellation aborted
    // was sent twice. An answer that arrived as the activity was cancelled came from the cache on resume.
    expect(sent2 - sent0).toBe(Q * N_MAX + aborted);
    expect(sent2 - sent1).toBeLessThanOrEqual(Q * N_MAX - kept);
    expect(sent1 - sent0).toBeGreaterThanOrEqual(kept);
    expect(await answered(runId)).toBe(Q * N_MAX);
    const [rows] = await q<{ n: number }>(`select count(*)::int as n from inference_requests where run_id = $1 and endpoint = 'policy'`, [runId]);
    expect(rows!.n).toBe(Q * N_MAX);

    // The same sweep uninterrupted (another experiment, answered by the cache): the same curve, no policy request sent.
    const fresh = await launchRun({ loaded: await specFromObject(spec(uniqueName('fresh'))), db: db.db, client, taskQueue: TQ });
    await client.workflow.getHandle(fresh.runId).result();
    expect((sim.stats().byModel.policy ?? 0) - sent2).toBe(0);
    const resumed = await curve(runId);
    const whole = await curve(fresh.runId);
    expect(resumed.size).toBe(3 * 4);
    expect([...resumed.keys()].sort()).toEqual([...whole.keys()].sort());
    for (const [k, v] of whole) expect(resumed.get(k), k).toBeCloseTo(v, 9);
  }, 300_000);
});
