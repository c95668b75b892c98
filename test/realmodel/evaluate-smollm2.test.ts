/**
 * The evaluate stage end to end against a real model behind a real server: SmolLM2-135M-Instruct
 * served by `transformers serve` (requirements.txt; weights prepared by
 * scripts/prepare-smollm2.py, which .ci/run calls), 20 real VL-RewardBench items in both orders,
 * through the real gateway, Temporal and Postgres. A missing model or CLI fails loudly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import type { Client } from '@temporalio/client';
import { launchRun } from '../../cli/launch.js';
import { parseChoice } from '../../activities/evaluate/parse.js';
import { judgments, metrics, stages } from '../../db/schema/index.js';
import '../../spec/builtin.js';
import { REPO, openTestDb, startTestWorker, testClient, uniqueName } from '../helpers/env.js';
import { specFromObject } from '../helpers/spec.js';
import type { DbHandle } from '../../db/client.js';
import type { RunningWorker } from '../../worker.js';
import { serveSmolLM2, type ServedModel } from './serve.js';

const DATA = `${REPO}/data/vl-rewardbench/data.jsonl`;
const TQ = uniqueName('realmodel');
const ITEMS = 20;
let db: DbHandle;
let served: ServedModel;
let worker: RunningWorker;
let client: Client;
let closeClient: () => Promise<void>;

type M = typeof metrics.$inferSelect;
interface Output {
  item_key: string;
  status: string | null;
  content: string | null;
  completion_tokens: number | null;
}

describe('evaluate with SmolLM2-135M-Instruct behind transformers serve', () => {
  let runId: string;
  let rows: M[];
  let outputs: Output[];
  const metric = (name: string, scope = 'overall', policy = '') => rows.find((r) => r.metric === name && r.scope === scope && r.policy === policy);

  beforeAll(async () => {
    served = await serveSmolLM2();
    db = await openTestDb();
    worker = await startTestWorker(TQ);
    ({ client, close: closeClient } = await testClient());
    const loaded = await specFromObject({
      name: uniqueName('smollm2'),
      seed: 3,
      endpoints: { smollm2: { base_url: served.baseUrl, model: served.model, concurrency: 2, timeout_s: 600 } },
      datasets: { vlrb: { path: DATA, limit: ITEMS } },
      stages: [
        {
          id: 'eval',
          uses: 'evaluate',
          // Greedy decoding: the same outputs on every run of this code.
          with: { dataset: 'vlrb', judge: 'smollm2', positions: 'swap', temperature: 0, max_tokens: 48, bootstrap: 200 },
        },
      ],
    });
    ({ runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ }));
    await client.workflow.getHandle(runId).result();
    rows = await db.db.select().from(metrics).where(eq(metrics.runId, runId));
    const res = await db.pool.query<Output>(
      `select q.item_key, r.status, c.content, r.completion_tokens
       from inference_requests q
       left join inference_results r on r.request_id = q.id
       left join inference_cache c on c.key = q.cache_key and r.status = 'succeeded'
       where q.run_id = $1 and q.stage_id = 'eval'`,
      [runId],
    );
    outputs = res.rows;
  }, 1_800_000);

  afterAll(async () => {
    await worker?.shutdown();
    await closeClient?.();
    await served?.close();
    await db?.close();
  });

  it('judges 20 items in both orders and stores every output of the model', async () => {
    const [stage] = await db.db.select().from(stages).where(eq(stages.runId, runId));
    expect(stage!.status).toBe('succeeded');
    expect(outputs).toHaveLength(2 * ITEMS);
    expect(outputs.every((o) => o.status === 'succeeded' && typeof o.content === 'string' && o.content.trim().length > 0)).toBe(true);
    expect(outputs.every((o) => o.completion_tokens! > 0 && o.completion_tokens! <= 48)).toBe(true);
    const js = await db.db.select().from(judgments).where(eq(judgments.runId, runId));
    expect(js).toHaveLength(2 * ITEMS);
    expect(new Set(js.map((j) => j.itemKey)).size).toBe(ITEMS);
    expect(js.filter((j) => j.status === 'failed')).toHaveLength(0);
    expect(metric('requests')!.value).toBe(2 * ITEMS);
    expect(metric('accuracy', 'overall', 'wrong')!.n).toBe(ITEMS);
  });

  it("reads a choice from at least 90% of the real outputs (55% were unparseable before), and the stored rate is the parser's", () => {
    const unparsed = outputs.filter((o) => parseChoice(o.content!, 2, 'letters').position === null).length;
    const rate = metric('unparseable_rate')!;
    expect(rate.n).toBe(2 * ITEMS);
    expect(rate.value).toBeCloseTo(unparsed / (2 * ITEMS), 10);
    expect(rate.value).toBeLessThanOrEqual(0.1);
    console.log(
      `SmolLM2-135M-Instruct, ${ITEMS} VL-RewardBench items x 2 orders: unparseable ${(rate.value * 100).toFixed(1)}%, ` +
        `first-position rate ${(metric('first_position_rate')!.value * 100).toFixed(1)}%, accuracy (wrong) ${(metric('accuracy', 'overall', 'wrong')!.value * 100).toFixed(1)}%`,
    );
  });
});
