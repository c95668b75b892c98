/**
 * The `distill` stage end to end on easy-vqa: synthesize → distill through the simulator
 * (captioner, reasoners with set accuracy / hint-following / leak rates, rewriters), Temporal and
 * Postgres. Measured acceptance against the configured rates, one caption per image, sets, caches.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { parquetReadObjects } from 'hyparquet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportArtifact } from '../../activities/datasets/export.js';
import { renderDistill } from '../../cli/distill-results.js';
import { launchRun } from '../../cli/launch.js';
import type { DbHandle } from '../../db/client.js';
import { runArtifacts } from '../../db/artifacts.js';
import { DEFAULT_REWRITE_TEMPLATES } from '../../activities/distill/core.js';
import type { DistillSummary } from '../../activities/stages/distill.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { uniqueName } from '../helpers/env.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { specFromObject } from '../helpers/spec.js';
import { binomial99, synthStage, synthTruth } from './helpers.js';

const TQ = uniqueName('distill');
const SEED = 17;
const LIMIT = 400;
// Configured rates (simulator) and what they imply for one attempt.
const ACCURACY = 0.5;
const HINT_FOLLOWING = 0.6;
const LEAK = 0.5;
const MISS = 0.2;
const CHANGE = 0.05;
const P_PLAIN = ACCURACY;
const P_HINT = (HINT_FOLLOWING + (1 - HINT_FOLLOWING) * ACCURACY) * (1 - CHANGE) * (1 - LEAK * MISS);

let db: DbHandle;
let writerSim: SimHandle;
let sim: SimHandle;
let client: Client;
let stack: TestStack;
let truth: string;

const q = async <T extends Record<string, unknown>>(text: string, params: unknown[] = []) => (await db.pool.query<T>(text, params)).rows;

beforeAll(async () => {
  stack = await startTestStack(TQ, { seed: 3, models: { writer: { behaviour: 'negatives' } } });
  ({ db, client, sim: writerSim } = stack);
  truth = await synthTruth({ db, client, taskQueue: TQ, writerUrl: writerSim.url, name: uniqueName('distill-truth'), seed: SEED, limit: LIMIT });
  sim = await startSimulator({
    seed: 11,
    models: {
      captioner: { behaviour: 'captioner', output_tokens: 60 },
      reasoner: { behaviour: 'reasoner', accuracy: ACCURACY, hint_following: HINT_FOLLOWING, leak_rate: LEAK, truth, output_tokens: 150 },
      'reasoner-field': { behaviour: 'reasoner', accuracy: ACCURACY, reasoning_field: true, truth, output_tokens: 150 },
      rewriter: { behaviour: 'rewriter', miss_rate: MISS, change_rate: CHANGE },
      imager: { behaviour: 'rewriter' },
    },
  });
}, 600_000);
afterAll(async () => {
  await sim?.close();
  await stack?.close();
});

function spec(name: string, toImage?: string) {
  const s = synthStage(LIMIT);
  const ep = (url: string, model: string) => ({ base_url: url, model, concurrency: 32 });
  return {
    name,
    seed: SEED,
    endpoints: {
      writer: ep(writerSim.url, 'writer'),
      captioner: ep(sim.url, 'captioner'),
      reasoner: ep(sim.url, 'reasoner'),
      'reasoner-field': ep(sim.url, 'reasoner-field'),
      rewriter: ep(sim.url, 'rewriter'),
      imager: ep(sim.url, 'imager'),
    },
    datasets: s.datasets,
    stages: [
      s.stage,
      {
        id: 'hint',
        uses: 'distill',
        needs: ['synth'],
        with: {
          items: { from: 'synth' },
          captioner: 'captioner',
          reasoner: 'reasoner',
          hint: true,
          rewrites: [
            { name: 'remove-hint', endpoint: 'rewriter' },
            { name: 'to-image', endpoint: 'imager', ...(toImage ? { template: toImage } : {}) },
          ],
          max_attempts: 4,
          validation_fraction: 0.1,
        },
      },
      {
        id: 'plain',
        uses: 'distill',
        needs: ['synth'],
        with: { items: { from: 'synth' }, captioner: 'captioner', reasoner: 'reasoner-field', hint: false, max_attempts: 4, rl_items: 'unused' },
      },
    ],
  };
}

describe('distill on easy-vqa items synthesized in the same run', () => {
  const name = uniqueName('distill');
  let runId: string;
  let sent: Record<string, number>;

  beforeAll(async () => {
    const before = sim.stats().byModel;
    ({ runId } = await launchRun({ loaded: await specFromObject(spec(name)), db: db.db, client, taskQueue: TQ }));
    await client.workflow.getHandle(runId).result();
    const after = sim.stats().byModel;
    sent = Object.fromEntries(Object.keys(after).map((m) => [m, (after[m] ?? 0) - (before[m] ?? 0)]));
  }, 600_000);

  const summaryOf = async (stageId: string) => {
    const a = (await runArtifacts(db.db, runId)).find((x) => x.stageId === stageId && x.kind === 'sft-set')!;
    return { art: a, s: a.summary as DistillSummary };
  };
  const attemptRates = (stageId: string) =>
    q<{ attempt: number; tried: number; accepted: number }>(
      `select attempt, count(*)::int as tried, count(*) filter (where status = 'accepted')::int as accepted
       from distill_attempts where run_id = $1 and stage_id = $2 group by attempt order by attempt`,
      [runId, stageId],
    );

  it('hint: false accepts at the reasoner accuracy, per attempt and pooled (binomial 99%)', async () => {
    const rows = await attemptRates('plain');
    expect(rows.length).toBeGreaterThanOrEqual(3);
    // The first attempt (every item) and all attempts pooled: each attempt is a fresh sample.
    for (const r of rows.slice(0, 1)) {
      const [lo, hi] = binomial99(P_PLAIN, r.tried);
      expect(r.accepted / r.tried, `attempt ${r.attempt + 1}: ${r.accepted}/${r.tried}`).toBeGreaterThan(lo);
      expect(r.accepted / r.tried).toBeLessThan(hi);
    }
    const tried = rows.reduce((a, r) => a + r.tried, 0);
    const accepted = rows.reduce((a, r) => a + r.accepted, 0);
    const [lo, hi] = binomial99(P_PLAIN, tried);
    expect(accepted / tried).toBeGreaterThan(lo);
    expect(accepted / tried).toBeLessThan(hi);
    // The traces came in reasoning_content: read, with no tags left.
    const traces = await q<{ trace: string }>("select trace from distill_attempts where run_id = $1 and stage_id = 'plain' and status = 'accepted'", [runId]);
    expect(traces.length).toBe(accepted);
    for (const t of traces) {
      expect(t.trace.length).toBeGreaterThan(200);
      expect(t.trace).not.toMatch(/<\/?think>|<answer>/);
    }
  });

  it('hint: true accepts at hint-following × rewrite × leak rates, higher than without the hint', async () => {
    const rows = await attemptRates('hint');
    const pooled = { tried: rows.reduce((a, r) => a + r.tried, 0), accepted: rows.reduce((a, r) => a + r.accepted, 0), attempt: -1 };
    for (const r of [rows[0]!, pooled]) {
      const [lo, hi] = binomial99(P_HINT, r.tried);
      expect(r.accepted / r.tried, `attempt ${r.attempt + 1}: ${r.accepted}/${r.tried}`).toBeGreaterThan(lo);
      expect(r.accepted / r.tried).toBeLessThan(hi);
    }
    const first = rows[0]!;
    const plainFirst = (await attemptRates('plain'))[0]!;
    expect(first.tried).toBe(plainFirst.tried);
    expect(first.accepted).toBeGreaterThan(plainFirst.accepted);
    // Each rejection reason the simulator was set to produce shows up, at about its rate.
    const { s } = await summaryOf('hint');
    const tried = rows.reduce((a, r) => a + r.tried, 0);
    const reasoned = HINT_FOLLOWING + (1 - HINT_FOLLOWING) * ACCURACY;
    const expectRate = (reason: string, p: number) => {
      const [lo, hi] = binomial99(p, tried);
      const got = (s.rejections[reason] ?? 0) / tried;
      expect(got, reason).toBeGreaterThan(lo);
      expect(got, reason).toBeLessThan(hi);
    };
    expectRate('wrong_choice', 1 - reasoned);
    expectRate('rewrite_changed_choice', reasoned * CHANGE);
    expectRate('hint_leaked', reasoned * (1 - CHANGE) * LEAK * MISS);
    // The to-image pass ran on every accepted trace.
    const traces = await q<{ trace: string }>("select trace from distill_attempts where run_id = $1 and stage_id = 'hint' and status = 'accepted'", [runId]);
    for (const t of traces) {
      expect(t.trace).not.toMatch(/\bdescription\b|\bhint\b/i);
      expect(t.trace).toMatch(/\bimage\b/);
    }
  });

  it('statistics: stored counts reconcile with the attempt rows and the request rows', async () => {
    for (const stageId of ['hint', 'plain']) {
      const { s, art } = await summaryOf(stageId);
      const rows = await attemptRates(stageId);
      for (const r of rows) expect(s.attempts[String(r.attempt + 1)]).toEqual({ tried: r.tried, accepted: r.accepted });
      const accepted = rows.reduce((a, r) => a + r.accepted, 0);
      expect(s.accepted_items).toBe(accepted);
      expect(art.rows).toBe(accepted);
      expect(Object.values(s.dropped).reduce((a, b) => a + b, 0)).toBe(s.source_items - accepted);
      const rejected = rows.reduce((a, r) => a + r.tried - r.accepted, 0);
      expect(Object.values(s.rejections).reduce((a, b) => a + b, 0)).toBe(rejected);
      const [req] = await q<{ n: number }>('select count(*)::int as n from inference_requests where run_id = $1 and stage_id = $2', [runId, stageId]);
      expect(s.requests.total).toBe(req!.n);
      expect(s.requests_per_accepted).toBeCloseTo(req!.n / accepted, 9);
      expect(s.tokens_per_accepted).toBeGreaterThan(0);
      expect(s.mean_trace_tokens).toBeGreaterThan(50);
      // Per error type: every item holds two negatives of the three types.
      const types = Object.keys(s.error_types).sort();
      expect(types).toEqual(['faulty_reasoning', 'hallucination', 'incompleteness']);
      expect(Object.values(s.error_types).reduce((a, e) => a + e.tried, 0)).toBe(2 * rows.reduce((a, r) => a + r.tried, 0));
    }
    expect((await summaryOf('hint')).s.hint).toBe(true);
    expect((await summaryOf('plain')).s.hint).toBe(false);
  });

  it('judgeflow results shows acceptance per attempt and error type, rejection reasons and the price of a trace', async () => {
    const arts = (await runArtifacts(db.db, runId)).filter((a) => a.stageId === 'hint');
    const { s } = await summaryOf('hint');
    const text = renderDistill('hint', arts);
    expect(text).toContain(`distill stage hint (hint on): ${s.source_items} items → ${s.accepted_items} accepted`);
    const first = s.attempts['1']!;
    expect(text).toMatch(new RegExp(`\\n1\\s+${first.tried}\\s+${first.accepted}\\s+${((100 * first.accepted) / first.tried).toFixed(1)}%`));
    const h = s.error_types.hallucination!;
    expect(text).toMatch(new RegExp(`hallucination\\s+${h.tried}\\s+${h.accepted}\\s+`));
    expect(text).toContain(`wrong_choice ${s.rejections.wrong_choice}`);
    expect(text).toContain(`hint_leaked ${s.rejections.hint_leaked}`);
    expect(text).toContain(`per accepted trace: ${s.requests_per_accepted.toLocaleString('en-US', { maximumFractionDigits: 2 })} requests`);
    expect(text).toContain(`rewrite remove-hint ${s.requests.rewrite['remove-hint']}`);
  });

  it('captions: one request per distinct image, counted at the simulator, shared by both stages through the cache', async () => {
    const [src] = (await runArtifacts(db.db, runId)).filter((a) => a.stageId === 'synth');
    const [images] = await q<{ n: number }>('select count(distinct image_hash)::int as n from mc_items where artifact_id = $1', [src!.id]);
    expect(images!.n).toBeGreaterThan(30);
    const [items] = await q<{ n: number }>('select count(*)::int as n from mc_items where artifact_id = $1', [src!.id]);
    expect(items!.n).toBeGreaterThan(images!.n); // easy-vqa asks several questions per image
    expect(sent.captioner).toBe(images!.n);
    for (const stageId of ['hint', 'plain']) {
      const [rows] = await q<{ n: number }>(
        "select count(*)::int as n from inference_requests where run_id = $1 and stage_id = $2 and item_key like 'caption|%'",
        [runId, stageId],
      );
      expect(rows!.n).toBe(images!.n);
    }
    expect(sim.stats().truthMisses).toBe(0);
  });

  it('sets: SFT rows are the accepted traces in the answer format; RL rows all items (or the unused ones), split by the seeded fraction', async () => {
    const arts = await runArtifacts(db.db, runId);
    const [src] = arts.filter((a) => a.stageId === 'synth');
    for (const stageId of ['hint', 'plain']) {
      const sft = arts.find((a) => a.stageId === stageId && a.kind === 'sft-set')!;
      const rl = arts.find((a) => a.stageId === stageId && a.kind === 'rl-set')!;
      expect(sft.parents).toEqual([src!.id]);
      expect(rl.parents).toEqual([src!.id]);
      const rows = await q<{ item_key: string; response: string; answer: string; trace_hash: string; prompt: string }>(
        'select item_key, response, answer, trace_hash, prompt from sft_rows where artifact_id = $1 order by idx',
        [sft.id],
      );
      const acc = await q<{ item_key: string; trace: string; trace_hash: string; best: number }>(
        "select item_key, trace, trace_hash, best from distill_attempts where run_id = $1 and stage_id = $2 and status = 'accepted' order by item_key",
        [runId, stageId],
      );
      expect(rows.map((r) => r.trace_hash).sort()).toEqual(acc.map((a) => a.trace_hash).sort());
      const byKey = new Map(acc.map((a) => [a.item_key, a]));
      for (const r of rows) {
        const a = byKey.get(r.item_key)!;
        expect(r.response).toBe(`<think>${a.trace}</think><answer>${String.fromCharCode(65 + a.best)}</answer>`);
        expect(r.prompt).toContain('[Response A]');
      }
      const [rlRows] = await q<{ n: number; v: number }>(
        "select count(*)::int as n, count(*) filter (where split = 'validation')::int as v from rl_rows where artifact_id = $1",
        [rl.id],
      );
      const expected = stageId === 'hint' ? src!.rows : src!.rows - rows.length;
      expect(rlRows!.n).toBe(expected);
      const fraction = stageId === 'hint' ? 0.1 : 0.05;
      const [lo, hi] = binomial99(fraction, rlRows!.n);
      expect(rlRows!.v / rlRows!.n).toBeGreaterThanOrEqual(Math.max(0, lo));
      expect(rlRows!.v / rlRows!.n).toBeLessThan(hi);
    }
    // rl_items: unused → no item in both sets.
    const plainSft = arts.find((a) => a.stageId === 'plain' && a.kind === 'sft-set')!;
    const plainRl = arts.find((a) => a.stageId === 'plain' && a.kind === 'rl-set')!;
    const [overlap] = await q<{ n: number }>(
      'select count(*)::int as n from sft_rows s join rl_rows r on r.item_key = s.item_key and r.artifact_id = $2 where s.artifact_id = $1',
      [plainSft.id, plainRl.id],
    );
    expect(overlap!.n).toBe(0);
  });

  it('no rejected trace in any export: every exported answer joins back to an accepted trace', async () => {
    const arts = await runArtifacts(db.db, runId);
    const dir = await mkdtemp(join(tmpdir(), 'jf-distill-export-'));
    for (const stageId of ['hint', 'plain']) {
      const sft = arts.find((a) => a.stageId === stageId && a.kind === 'sft-set')!;
      const rl = arts.find((a) => a.stageId === stageId && a.kind === 'rl-set')!;
      const attempts = await q<{ item_key: string; status: string; trace: string; best: number }>(
        'select item_key, status, trace, best from distill_attempts where run_id = $1 and stage_id = $2',
        [runId, stageId],
      );
      const accepted = new Set(
        attempts.filter((a) => a.status === 'accepted').map((a) => `<think>${a.trace}</think><answer>${String.fromCharCode(65 + a.best)}</answer>`),
      );
      const acceptedTraces = new Set(attempts.filter((a) => a.status === 'accepted').map((a) => a.trace));
      const rejectedTraces = attempts.filter((a) => a.status !== 'accepted' && a.trace !== '' && !acceptedTraces.has(a.trace)).map((a) => a.trace);
      expect(rejectedTraces.length).toBeGreaterThan(50);
      const answers: Record<string, string[]> = {};
      const lf = join(dir, stageId, 'lf', 'sft.json');
      await exportArtifact(db.db, sft.id, { format: 'llamafactory', out: lf });
      answers.llamafactory = (JSON.parse(readFileSync(lf, 'utf8')) as { messages: { role: string; content: string }[] }[]).map((r) => r.messages[1]!.content);
      const oa = join(dir, stageId, 'oa', 'sft.jsonl');
      await exportArtifact(db.db, sft.id, { format: 'openai', out: oa });
      answers.openai = readFileSync(oa, 'utf8')
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { messages: { content: string }[] }).messages[1]!.content);
      const tj = join(dir, stageId, 'trl', 'sft.jsonl');
      await exportArtifact(db.db, sft.id, { format: 'trl', out: tj });
      answers.trl = readFileSync(tj, 'utf8')
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { messages: { content: { text: string }[] }[] }).messages[1]!.content[0]!.text);
      const tp = join(dir, stageId, 'trlp', 'sft.parquet');
      await exportArtifact(db.db, sft.id, { format: 'trl', out: tp });
      const buf = readFileSync(tp);
      const file = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
      answers['trl-parquet'] = ((await parquetReadObjects({ file })) as { messages: { content: { text: string }[] }[] }[]).map(
        (r) => r.messages[1]!.content[0]!.text,
      );
      for (const [format, list] of Object.entries(answers)) {
        expect(list.length, format).toBe(sft.rows);
        for (const a of list) expect(accepted.has(a), `${format}: an exported answer is not an accepted trace`).toBe(true);
        const text = list.join('\n');
        for (const t of rejectedTraces) expect(text.includes(`<think>${t}</think>`), `${format}: a rejected trace was exported`).toBe(false);
      }
      // RL rows carry the answer label of the known best option, never a trace.
      const vp = join(dir, stageId, 'verl', 'rl.parquet');
      await exportArtifact(db.db, rl.id, { format: 'verl', out: vp });
      const vbuf = readFileSync(vp);
      const vrows = (await parquetReadObjects({ file: vbuf.buffer.slice(vbuf.byteOffset, vbuf.byteOffset + vbuf.byteLength) })) as {
        reward_model: { ground_truth: string };
        extra_info: { item_key: string };
      }[];
      expect(vrows.length).toBe(rl.rows);
      const bestOf = new Map(attempts.map((a) => [a.item_key, String.fromCharCode(65 + a.best)]));
      for (const r of vrows) expect(r.reward_model.ground_truth).toBe(bestOf.get(r.extra_info.item_key));
    }
  });

  it('a re-run with another label sends 0 requests and accepts the same traces', async () => {
    const before = sim.stats().requests + writerSim.stats().requests;
    const again = await launchRun({ loaded: await specFromObject(spec(name)), db: db.db, client, taskQueue: TQ, label: 'again' });
    await client.workflow.getHandle(again.runId).result();
    expect(sim.stats().requests + writerSim.stats().requests - before).toBe(0);
    for (const stageId of ['hint', 'plain']) {
      const one = (await runArtifacts(db.db, runId)).find((a) => a.stageId === stageId && a.kind === 'sft-set')!;
      const two = (await runArtifacts(db.db, again.runId)).find((a) => a.stageId === stageId && a.kind === 'sft-set')!;
      expect(two.contentHash).toBe(one.contentHash);
      expect(two.summary).toEqual(one.summary);
    }
  });

  it("changing only the to-image template re-sends only that pass's requests", async () => {
    const before = sim.stats().byModel;
    const beforeWriter = writerSim.stats().requests;
    const template = `${DEFAULT_REWRITE_TEMPLATES['to-image']!}\n\nKeep the same paragraphing.`;
    const changed = await launchRun({ loaded: await specFromObject(spec(name, template)), db: db.db, client, taskQueue: TQ });
    await client.workflow.getHandle(changed.runId).result();
    const after = sim.stats().byModel;
    const delta = (m: string) => (after[m] ?? 0) - (before[m] ?? 0);
    const [toImage] = await q<{ n: number }>(
      "select count(*)::int as n from inference_requests where run_id = $1 and stage_id = 'hint' and item_key like '%|rw:to-image|%'",
      [changed.runId],
    );
    expect(toImage!.n).toBeGreaterThan(100);
    expect(delta('imager')).toBe(toImage!.n);
    expect(delta('captioner') + delta('reasoner') + delta('reasoner-field') + delta('rewriter')).toBe(0);
    expect(writerSim.stats().requests - beforeWriter).toBe(0);
  });
});
