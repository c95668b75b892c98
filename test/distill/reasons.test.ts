/**
 * The rejection reasons distill.test.ts does not provoke, through the whole stage: `request_failed`
 * (a caption or a reasoning request that failed at the endpoint), `unparseable` and `over_length`
 * (completion tokens over `max_trace_tokens`), beside `wrong_choice`. The simulator injects 500s
 * (the endpoints make one attempt, so a fault is a failed request) and unparseable outputs at set
 * rates; the measured shares must fall in their binomial 99% intervals, and every attempt row must
 * agree with the request row and the result it was judged on.
 */
import { dirname } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DistillSummary } from '../../activities/stages/distill.js';
import { renderDistill } from '../../cli/distill-results.js';
import { launchRun } from '../../cli/launch.js';
import { runArtifacts } from '../../db/artifacts.js';
import type { DbHandle } from '../../db/client.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { uniqueName } from '../helpers/env.js';
import { specFromObject } from '../helpers/spec.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { binomial99, synthTruth } from './helpers.js';

const TQ = uniqueName('distill-reasons');
const SEED = 23;
const LIMIT = 300;
const ATTEMPTS = 3;
// Configured rates.
const CAPTION_FAIL = 0.2;
const REASON_FAIL = 0.1;
const UNPARSEABLE = 0.15;
const ACCURACY = 0.6;
// The simulated traces of 120 output tokens come out at 121–141 tokens: this limit cuts them about in half.
const MAX_TRACE_TOKENS = 130;

let db: DbHandle;
let writerSim: SimHandle;
let sim: SimHandle;
let client: Client;
let stack: TestStack;
let runId: string;
let truth: string;

const q = async <T extends Record<string, unknown>>(text: string, params: unknown[] = []) => (await db.pool.query<T>(text, params)).rows;

beforeAll(async () => {
  stack = await startTestStack(TQ, { seed: 5, models: { writer: { behaviour: 'negatives' } } });
  ({ db, client, sim: writerSim } = stack);
  truth = await synthTruth({ db, client, taskQueue: TQ, writerUrl: writerSim.url, name: uniqueName('reasons-truth'), seed: SEED, limit: LIMIT });
  sim = await startSimulator({
    seed: 19,
    models: {
      captioner: { behaviour: 'captioner', output_tokens: 40, faults: { rate_500: CAPTION_FAIL } },
      reasoner: { behaviour: 'reasoner', accuracy: ACCURACY, unparseable_rate: UNPARSEABLE, truth, output_tokens: 120, faults: { rate_500: REASON_FAIL } },
    },
  });
  // One attempt per request: an injected 500 is a failed request, not a retried one.
  const ep = (model: string) => ({ base_url: sim.url, model, concurrency: 16, max_attempts: 1 });
  const loaded = await specFromObject({
    name: uniqueName('distill-reasons'),
    seed: SEED,
    endpoints: { captioner: ep('captioner'), reasoner: ep('reasoner') },
    // `images`: the exported items' image paths resolve against their folder (without it, text only).
    datasets: { items: { path: truth, format: 'mc-jsonl', images: dirname(truth) } },
    stages: [
      {
        id: 'distill',
        uses: 'distill',
        with: { items: 'items', captioner: 'captioner', reasoner: 'reasoner', hint: false, max_attempts: ATTEMPTS, max_trace_tokens: MAX_TRACE_TOKENS },
      },
    ],
  });
  ({ runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ }));
  await client.workflow.getHandle(runId).result();
}, 600_000);
afterAll(async () => {
  await sim?.close();
  await stack?.close();
});

type Attempt = {
  item_key: string;
  attempt: number;
  status: string;
  choice: number | null;
  best: number;
  trace_tokens: number;
  caption_status: string | null;
  reason_id: string | null;
  reason_status: string | null;
  reason_tokens: number | null;
};

const attempts = () =>
  q<Attempt>(
    `select d.item_key, d.attempt, d.status, d.choice, d.best, d.trace_tokens,
            cr.status as caption_status, q.id::text as reason_id, rr.status as reason_status, rr.completion_tokens as reason_tokens
     from distill_attempts d
     left join inference_results cr on cr.request_id = (d.requests->>'caption')::bigint
     left join inference_requests q on q.run_id = d.run_id and q.stage_id = d.stage_id and q.item_key = d.item_key || '|reason|a' || d.attempt
     left join inference_results rr on rr.request_id = q.id
     where d.run_id = $1 and d.stage_id = 'distill' order by d.item_key, d.attempt`,
    [runId],
  );

const within = (what: string, count: number, n: number, p: number) => {
  const [lo, hi] = binomial99(p, n);
  expect(count / n, `${what}: ${count}/${n}, expected ${p}`).toBeGreaterThan(lo);
  expect(count / n, `${what}: ${count}/${n}, expected ${p}`).toBeLessThan(hi);
};

describe('distill rejection reasons through the stage', () => {
  it('a failed caption rejects every attempt of its items as request_failed, without a reasoning request; they are dropped', async () => {
    const rows = await attempts();
    const [images] = await q<{ n: number; failed: number }>(
      `select count(*)::int as n, count(*) filter (where r.status = 'failed')::int as failed
       from inference_requests q join inference_results r on r.request_id = q.id
       where q.run_id = $1 and q.stage_id = 'distill' and q.item_key like 'caption|%'`,
      [runId],
    );
    // Too few images (about 30) for a rate check: some failed, and their items show it.
    expect(images!.n).toBeGreaterThan(20);
    expect(images!.failed).toBeGreaterThan(0);
    expect(images!.failed).toBeLessThan(images!.n);
    const uncaptioned = rows.filter((r) => r.caption_status === 'failed');
    expect(uncaptioned.length).toBeGreaterThan(0);
    for (const r of uncaptioned) {
      expect(r.status).toBe('request_failed');
      expect(r.reason_id).toBeNull();
    }
    // Every attempt was spent on them.
    const items = new Set(uncaptioned.map((r) => r.item_key));
    expect(uncaptioned.length).toBe(items.size * ATTEMPTS);
    const { s } = await summary();
    expect(s.dropped['attempts spent (last: request_failed)']).toBeGreaterThanOrEqual(items.size);
  });

  it('reasoning attempts: request_failed, unparseable, wrong_choice, over_length and accepted at the configured rates', async () => {
    const rows = (await attempts()).filter((r) => r.caption_status === 'succeeded');
    expect(rows.every((r) => r.reason_id !== null)).toBe(true);
    const n = rows.length;
    expect(n).toBeGreaterThan(LIMIT);
    const count = (status: string) => rows.filter((r) => r.status === status).length;
    within('request_failed', count('request_failed'), n, REASON_FAIL);
    within('unparseable', count('unparseable'), n, (1 - REASON_FAIL) * UNPARSEABLE);
    within('wrong_choice', count('wrong_choice'), n, (1 - REASON_FAIL) * (1 - UNPARSEABLE) * (1 - ACCURACY));
    within('right choice', count('over_length') + count('accepted'), n, (1 - REASON_FAIL) * (1 - UNPARSEABLE) * ACCURACY);
    expect(count('over_length')).toBeGreaterThan(20);
    expect(count('accepted')).toBeGreaterThan(20);
    expect(count('request_failed') + count('unparseable') + count('wrong_choice') + count('over_length') + count('accepted')).toBe(n);

    // Each verdict agrees with the request's result it was judged on.
    for (const r of rows) {
      const at = `${r.item_key} attempt ${r.attempt}: ${r.status}`;
      if (r.status === 'request_failed') {
        expect(r.reason_status, at).toBe('failed');
        continue;
      }
      expect(r.reason_status, at).toBe('succeeded');
      expect(r.trace_tokens, at).toBe(r.reason_tokens);
      if (r.status === 'unparseable') expect(r.choice, at).toBeNull();
      if (r.status === 'wrong_choice') {
        expect(r.choice, at).not.toBeNull();
        expect(r.choice, at).not.toBe(r.best);
      }
      if (r.status === 'over_length' || r.status === 'accepted') expect(r.choice, at).toBe(r.best);
      if (r.status === 'over_length') expect(r.trace_tokens, at).toBeGreaterThan(MAX_TRACE_TOKENS);
      if (r.status === 'accepted') expect(r.trace_tokens, at).toBeLessThanOrEqual(MAX_TRACE_TOKENS);
    }
  });

  it('the summary, judgeflow results and the sets count every reason; no over-length trace is in the SFT set', async () => {
    const rows = await attempts();
    const { s, arts } = await summary();
    const byStatus: Record<string, number> = {};
    for (const r of rows) if (r.status !== 'accepted') byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
    expect(s.rejections).toEqual(byStatus);
    expect(Object.keys(s.rejections).sort()).toEqual(['over_length', 'request_failed', 'unparseable', 'wrong_choice']);
    const text = renderDistill('distill', arts);
    for (const [reason, n] of Object.entries(byStatus)) expect(text).toContain(`${reason} ${n} (`);
    // Dropped items, by the reason of their last rejection, add up to the items without a trace.
    const accepted = new Set(rows.filter((r) => r.status === 'accepted').map((r) => r.item_key));
    const lastOf = new Map(rows.map((r) => [r.item_key, r]));
    const expectDropped: Record<string, number> = {};
    for (const [key, last] of lastOf) {
      if (accepted.has(key)) continue;
      expect(last.attempt).toBe(ATTEMPTS - 1);
      const why = `attempts spent (last: ${last.status})`;
      expectDropped[why] = (expectDropped[why] ?? 0) + 1;
    }
    expect(s.dropped).toEqual(expectDropped);
    const sft = arts.find((a) => a.kind === 'sft-set')!;
    expect(sft.rows).toBe(accepted.size);
    const [overLong] = await q<{ n: number }>(
      `select count(*)::int as n from sft_rows s join distill_attempts d on d.run_id = $2 and d.stage_id = 'distill' and d.item_key = s.item_key and d.attempt = s.attempt
       where s.artifact_id = $1 and (d.status <> 'accepted' or d.trace_tokens > $3)`,
      [sft.id, runId, MAX_TRACE_TOKENS],
    );
    expect(overLong!.n).toBe(0);
  });
});

async function summary() {
  const arts = (await runArtifacts(db.db, runId)).filter((a) => a.stageId === 'distill');
  return { arts, s: arts.find((a) => a.kind === 'sft-set')!.summary as DistillSummary };
}
