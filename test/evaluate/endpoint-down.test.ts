/**
 * An endpoint that dies mid-run must not "succeed": the stage stops after the endpoint's
 * `down_after_s` with the endpoint named; a stage whose failed-request share passes
 * `max_failed_share` fails the run (exit 1 from the CLI); relaunching the same command sends the
 * failed requests again (and only them) and ends with the numbers of an uninterrupted run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { and, eq } from 'drizzle-orm';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { launchRun } from '../../cli/launch.js';
import { runs, stages } from '../../db/schema/index.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import type { SimConfigInput } from '../../sim/config.js';
import '../../spec/builtin.js';
import { runCli } from '../helpers/cli.js';
import { REPO, uniqueName } from '../helpers/env.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { specFromObject, writeSpec } from '../helpers/spec.js';
import type { DbHandle } from '../../db/client.js';

const DATA = `${REPO}/data/vl-rewardbench/data.jsonl`;
const TQ = uniqueName('down');
const SIM: SimConfigInput = {
  seed: 13,
  truth: DATA,
  // 50 ms a request at concurrency 4: 400 requests take about 5 s, so the stop lands mid-stage.
  latency: { kind: 'fixed', ms: 50 },
  models: {
    'judge-80': { behaviour: 'judge', accuracy: 0.8 },
    // Three requests in ten fail with a 500 on their first attempt; the second attempt succeeds.
    'judge-flaky': { behaviour: 'judge', accuracy: 0.8, latency: { kind: 'fixed', ms: 2 }, faults: { rate_500: 0.3, max_faults_per_body: 1 } },
  },
};

let db: DbHandle;
let sim: SimHandle;
let client: Client;
let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack(TQ, SIM);
  ({ db, sim, client } = stack);
});
afterAll(() => stack?.close());

async function counts(runId: string, stageId: string) {
  const res = await db.pool.query<{ requests: number; succeeded: number; failed: number }>(
    `select count(*)::int as requests, count(*) filter (where r.status = 'succeeded')::int as succeeded, count(*) filter (where r.status = 'failed')::int as failed
     from inference_requests q left join inference_results r on r.request_id = q.id where q.run_id = $1 and q.stage_id = $2`,
    [runId, stageId],
  );
  return res.rows[0]!;
}

async function judgmentsOf(runId: string) {
  const res = await db.pool.query(
    'select stage_id, item_key, view, sample, status, chosen_position from judgments where run_id = $1 order by stage_id, item_key, view, sample',
    [runId],
  );
  return res.rows;
}

async function metricOf(runId: string, metric: string) {
  const res = await db.pool.query<{ value: number; n: number }>(
    `select value, n from metrics where run_id = $1 and metric = $2 and scope = 'overall' and policy in ('', 'excluded') order by policy desc limit 1`,
    [runId, metric],
  );
  return res.rows[0];
}

describe('an endpoint that dies mid-run', () => {
  it('stops the stage after down_after_s naming the endpoint; a relaunch sends only the unanswered requests and equals an uninterrupted run', async () => {
    const name = uniqueName('down');
    const spec = (revision = '') =>
      specFromObject({
        name,
        seed: 4,
        endpoints: { judge: { base_url: sim.url, model: 'judge-80', concurrency: 4, down_after_s: 5, revision } },
        datasets: { vlrb: { path: DATA, limit: 200 } },
        stages: [{ id: 'eval', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge', bootstrap: 100, chunk_size: 100 } }],
      });
    const loaded = await spec();
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
    const result = client.workflow.getHandle(runId).result();

    const deadline = Date.now() + 60_000;
    while ((await counts(runId, 'eval')).succeeded < 120) {
      if (Date.now() > deadline) throw new Error('no progress to 120 answered requests');
      await new Promise((r) => setTimeout(r, 20));
    }
    const port = sim.port;
    await sim.close();
    const stoppedAt = Date.now();
    const err = await result.then(
      () => undefined,
      (e: unknown) => e,
    );
    const seconds = (Date.now() - stoppedAt) / 1000;
    expect(err).toBeInstanceOf(WorkflowFailedError);
    // Bounded by down_after_s (5 s) plus the backoff of the request that noticed: not 238 s of retries.
    expect(seconds).toBeLessThan(60);
    console.log(`endpoint stopped: the run failed ${seconds.toFixed(1)} s later`);

    const [stage] = await db.db
      .select()
      .from(stages)
      .where(and(eq(stages.runId, runId), eq(stages.stageId, 'eval')));
    expect(stage!.status).toBe('failed');
    expect(stage!.error).toMatch(new RegExp(`endpoint "judge": nothing answers at http://127\\.0\\.0\\.1:${port}/v1 for \\d+ s`));
    const [run] = await db.db.select().from(runs).where(eq(runs.id, runId));
    expect(run!.status).toBe('failed');
    const atStop = await counts(runId, 'eval');
    expect(atStop.requests).toBe(400);
    expect(atStop.succeeded).toBeGreaterThanOrEqual(120);
    expect(atStop.succeeded).toBeLessThan(400);

    // The endpoint is back on the same URL; the same launch resumes the failed run.
    sim = await startSimulator(SIM, { port });
    const again = await launchRun({ loaded: await spec(), db: db.db, client, taskQueue: TQ });
    expect(again).toMatchObject({ runId, resumed: true });
    await client.workflow.getHandle(runId).result();
    expect(sim.stats().requests).toBe(400 - atStop.succeeded);
    expect(await counts(runId, 'eval')).toEqual({ requests: 400, succeeded: 400, failed: 0 });

    // An uninterrupted run of the same spec and seed (another revision: nothing comes from the cache).
    const ref = await launchRun({ loaded: await spec('uninterrupted'), db: db.db, client, taskQueue: TQ });
    await client.workflow.getHandle(ref.runId).result();
    expect(sim.stats().requests).toBe(400 - atStop.succeeded + 400);
    expect(await judgmentsOf(runId)).toEqual(await judgmentsOf(ref.runId));
    expect(await metricOf(runId, 'headline_accuracy')).toEqual(await metricOf(ref.runId, 'headline_accuracy'));
    expect(await metricOf(runId, 'items_answered')).toEqual({ value: 200, n: 200 });
  }, 300_000);

  it('failed requests above max_failed_share fail the run (exit 1); the relaunch sends the failed ones again and succeeds (exit 0)', async () => {
    const name = uniqueName('share');
    const path = writeSpec({
      name,
      seed: 4,
      endpoints: { judge: { base_url: sim.url, model: 'judge-flaky', concurrency: 8, max_attempts: 1 } },
      datasets: { vlrb: { path: DATA, limit: 100 } },
      stages: [{ id: 'eval', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge', bootstrap: 100 } }],
    });
    const env = { JUDGEFLOW_TASK_QUEUE: TQ };
    const before = sim.stats().requests;
    const first = await runCli(['run', path], env);
    expect(first.code).toBe(1);
    const runId = /run (\S+): started/.exec(first.stderr)![1]!;
    const failed = await counts(runId, 'eval');
    expect(failed.requests).toBe(200);
    expect(failed.failed).toBeGreaterThan(20);
    expect(sim.stats().requests - before).toBe(200);
    const [stage] = await db.db
      .select()
      .from(stages)
      .where(and(eq(stages.runId, runId), eq(stages.stageId, 'eval')));
    expect(stage!.status).toBe('failed');
    expect(stage!.error).toContain(`${failed.failed} of 200 requests failed`);
    expect(stage!.error).toMatch(/transient:server_error ×\d+\), above max_failed_share 0\.02/);
    const answered = (await metricOf(runId, 'items_answered'))!.value;
    expect(answered).toBeLessThan(100);

    const results = await runCli(['results', runId], env);
    expect(results.code).toBe(0);
    expect(results.stdout).toMatch(new RegExp(`eval\\s+${answered}/100\\s`));

    const second = await runCli(['run', path], env);
    expect(second.code).toBe(0);
    expect(second.stderr).toMatch(/resum/i);
    // Exactly the failed requests were sent again; the answered ones came from the stored results.
    expect(sim.stats().requests - before).toBe(200 + failed.failed);
    expect(await counts(runId, 'eval')).toEqual({ requests: 200, succeeded: 200, failed: 0 });
    expect(second.stdout).toMatch(/eval\s+100\/100\s/);
  }, 300_000);
});
