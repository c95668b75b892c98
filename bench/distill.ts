/**
 * Distill-stage benchmark: the whole `distill` stage on Temporal vs a plain `openai` script running
 * the same caption → reason → reject/retry loop.
 *
 *   npx tsx bench/distill.ts [--items 2000] [--images 200] [--accuracy 0.7] [--attempts 4] [--latency 50] [--concurrency 64] [--rounds 1]
 *
 * Workload: `items` multiple-choice items (3 options) over `images` distinct images, a simulated
 * captioner and a text reasoner right with probability `accuracy` (30% of traces rejected at the
 * default), up to `attempts` attempts per item, hint off, no rewrites, simulator in a child
 * process with a fixed latency.
 *  (a) judgeflow: launch an experiment with one `distill` stage and wait for it — dataset import,
 *      request rows, the gateway, per-attempt verdicts in Postgres, the sets built and sealed; a
 *      fresh seed each round (no cache hits);
 *  (b) plain: caption each image once, then per attempt send the reasoning requests of the items
 *      still without an accepted trace at the same concurrency, parse, keep the right ones, in memory.
 * Prints both times, the throughput ratio plain/judgeflow (target ≥ 0.8), the requests per
 * accepted trace and items per attempt of both, and a timeline of the judgeflow run (when each
 * step's request rows were written and its first and last results committed).
 */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import YAML from 'yaml';
import { DEFAULT_CAPTION_TEMPLATE, DEFAULT_REASON_TEMPLATE, judgeReasoning, renderReasonPrompt } from '../activities/distill/core.js';
import { launchRun } from '../cli/launch.js';
import '../spec/builtin.js';
import { loadSpec } from '../spec/load.js';
import { Cleanups, startJudgeflowBench, median } from './lib.js';
import { solidPng } from '../test/helpers/png.js';

const { values: args } = parseArgs({
  options: {
    items: { type: 'string', default: '2000' },
    images: { type: 'string', default: '200' },
    accuracy: { type: 'string', default: '0.7' },
    attempts: { type: 'string', default: '4' },
    latency: { type: 'string', default: '50' },
    concurrency: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '1' },
  },
});
const N = Number(args.items);
const IMAGES = Number(args.images);
const ATTEMPTS = Number(args.attempts);
const CONCURRENCY = Number(args.concurrency);

const png = (i: number): Buffer => solidPng(1, [i & 255, (i >> 8) & 255, 7]);

interface Item {
  id: string;
  query: string;
  image: string;
  candidates: string[];
  best: number;
}

/** Items whose options are unique sentences (the simulator's truth file locates them). */
function writeItems(dir: string): { path: string; items: Item[] } {
  mkdirSync(join(dir, 'img'));
  for (let i = 0; i < IMAGES; i++) writeFileSync(join(dir, 'img', `${i}.png`), png(i));
  const items: Item[] = [];
  for (let i = 0; i < N; i++) {
    const c = [0, 1, 2].map(
      (j) => `Shape ${i}-${j}: the figure in this picture is a ${['red circle', 'blue square', 'green triangle'][(i + j) % 3]} of size ${i * 3 + j}.`,
    );
    items.push({ id: `item-${i}`, query: `What shape is in picture ${i % IMAGES}?`, image: `img/${i % IMAGES}.png`, candidates: c, best: i % 3 });
  }
  const path = join(dir, 'items.jsonl');
  writeFileSync(path, items.map((x) => JSON.stringify(x)).join('\n') + '\n');
  return { path, items };
}

async function plainScript(
  url: string,
  items: Item[],
  dir: string,
  seed: number,
): Promise<{ seconds: number; cpu: number; accepted: number; requests: number; phases: string }> {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const client = new OpenAI({ baseURL: url, apiKey: 'EMPTY', maxRetries: 2, timeout: 120_000 });
  const pool = async <T>(jobs: T[], fn: (job: T) => Promise<void>) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < jobs.length) await fn(jobs[next++]!);
      }),
    );
  };
  let requests = 0;
  const captions = new Map<string, string>();
  const { readFileSync } = await import('node:fs');
  await pool([...new Set(items.map((i) => i.image))], async (image) => {
    const b64 = readFileSync(join(dir, image)).toString('base64');
    requests++;
    const res = await client.chat.completions.create({
      model: 'captioner',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: `data:image/png;base64,${b64}` } },
            { type: 'text', text: DEFAULT_CAPTION_TEMPLATE },
          ],
        },
      ],
      temperature: 0.2,
      max_tokens: 512,
      seed,
    });
    captions.set(image, res.choices[0]?.message.content ?? '');
  });
  const phases = [`captions ${((performance.now() - t0) / 1000).toFixed(1)} s`];
  const accepted = new Map<string, string>();
  let pending = items;
  for (let attempt = 0; attempt < ATTEMPTS && pending.length > 0; attempt++) {
    const tried = pending.length;
    await pool(pending, async (item) => {
      const text = renderReasonPrompt(DEFAULT_REASON_TEMPLATE, {
        caption: captions.get(item.image)!,
        question: item.query,
        candidates: item.candidates,
        labels: 'letters',
        hint: null,
      });
      requests++;
      const res = await client.chat.completions.create({
        model: 'reasoner',
        messages: [{ role: 'user', content: text }],
        temperature: 0.6,
        max_tokens: 4096,
        seed: seed + attempt,
      });
      const m = res.choices[0]?.message;
      const v = judgeReasoning(
        { ok: true, content: m?.content ?? '', reasoning: null, completionTokens: res.usage?.completion_tokens ?? 0 },
        { k: item.candidates.length, best: item.best, labels: 'letters', maxTraceTokens: 2048 },
      );
      if (v.reason === null) accepted.set(item.id, v.trace);
    });
    pending = pending.filter((i) => !accepted.has(i.id));
    phases.push(`attempt ${attempt + 1}: ${tried} items, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const cpu = process.cpuUsage(cpu0);
  return { seconds: (performance.now() - t0) / 1000, cpu: (cpu.user + cpu.system) / 1e6, accepted: accepted.size, requests, phases: phases.join(', ') };
}

async function main(cleanups: Cleanups): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'jf-bench-distill-'));
  const { path, items } = writeItems(dir);
  const latency = { kind: 'fixed', ms: Number(args.latency) };
  const { handle, url, client, taskQueue } = await startJudgeflowBench(cleanups, {
    name: 'distill',
    simulator: {
      seed: 5,
      latency,
      models: {
        captioner: { behaviour: 'captioner', output_tokens: 80 },
        reasoner: { behaviour: 'reasoner', accuracy: Number(args.accuracy), truth: path, output_tokens: 300 },
      },
    },
  });

  let seed = 300;
  const judgeflowRun = async (round: string) => {
    const specPath = join(dir, `${round}.yaml`);
    const ep = (model: string) => ({ base_url: url, model, concurrency: CONCURRENCY, timeout_s: 120 });
    writeFileSync(
      specPath,
      YAML.stringify({
        name: `bench-distill-${round}-${Date.now()}`,
        seed: seed++,
        endpoints: { captioner: ep('captioner'), reasoner: ep('reasoner') },
        // `images`: the items' image paths resolve against the folder (without it the stage reads no
        // image, sends no caption request and reasons over "(the item has no image)").
        datasets: { items: { path, format: 'mc-jsonl', images: dir } },
        stages: [
          { id: 'distill', uses: 'distill', with: { items: 'items', captioner: 'captioner', reasoner: 'reasoner', hint: false, max_attempts: ATTEMPTS } },
        ],
      }),
    );
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const loadedSpec = await loadSpec(specPath);
    const tLoaded = performance.now();
    const { runId } = await launchRun({ loaded: loadedSpec, db: handle.db, client, taskQueue });
    const launch = `loadSpec ${(tLoaded - t0).toFixed(0)} ms, launchRun ${(performance.now() - tLoaded).toFixed(0)} ms`;
    const out = (await client.workflow.getHandle(runId).result()) as { stages: Record<string, { ref: { accepted: number } }> };
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const [r] = (
      await handle.db.$client.query<{ n: string; captions: string }>(
        "select count(*) as n, count(*) filter (where item_key like 'caption|%') as captions from inference_requests where run_id = $1",
        [runId],
      )
    ).rows;
    const tried = (
      await handle.db.$client.query<{ n: string }>('select count(*) as n from distill_attempts where run_id = $1 group by attempt order by attempt', [runId])
    ).rows.map((x) => Number(x.n));
    // Where the time went: per step, when its request rows were written and its first and last
    // results committed (ms after the run row).
    const steps = (
      await handle.db.$client.query<{ step: string; prepared: number; first: number; last: number }>(
        `select case when q.item_key like 'caption|%' then 'caption' else 'a' || split_part(q.item_key, '|reason|a', 2) end as step,
                round(extract(epoch from min(q.created_at) - u.created_at) * 1000)::int as prepared,
                round(extract(epoch from min(r.finished_at) - u.created_at) * 1000)::int as first,
                round(extract(epoch from max(r.finished_at) - u.created_at) * 1000)::int as last
         from inference_requests q join inference_results r on r.request_id = q.id join runs u on u.id = q.run_id
         where q.run_id = $1 group by 1, u.created_at order by 2`,
        [runId],
      )
    ).rows;
    const [end] = (
      await handle.db.$client.query<{ started: number; finished: number }>(
        'select round(extract(epoch from started_at - created_at) * 1000)::int as started, round(extract(epoch from finished_at - created_at) * 1000)::int as finished from runs where id = $1',
        [runId],
      )
    ).rows;
    // Results committed per 250 ms after the first one: a dip is the endpoint's slots running dry.
    const rate = (
      await handle.db.$client.query<{ n: number }>(
        `with r as (select r.finished_at as t from inference_requests q join inference_results r on r.request_id = q.id where q.run_id = $1),
              f as (select min(t) as t0 from r)
         select count(*)::int as n from r, f group by floor(extract(epoch from r.t - f.t0) * 4) order by floor(extract(epoch from r.t - f.t0) * 4)`,
        [runId],
      )
    ).rows.map((x) => x.n);
    // The stage's activities from its own history: the gap since the previous activity completed
    // (workflow task + scheduling), waiting in the task queue, and running (ms).
    const ms = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) => Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;
    const events = (await client.workflow.getHandle(`${runId}/distill`).fetchHistory()).events ?? [];
    const byId = new Map<string, { name: string; scheduled: number; started?: number; completed?: number }>();
    for (const e of events) {
      const id = String(e.eventId);
      if (e.activityTaskScheduledEventAttributes)
        byId.set(id, { name: e.activityTaskScheduledEventAttributes.activityType?.name ?? '?', scheduled: ms(e.eventTime) });
      const started = e.activityTaskStartedEventAttributes;
      if (started) byId.get(String(started.scheduledEventId))!.started = ms(e.eventTime);
      const done = e.activityTaskCompletedEventAttributes;
      if (done) byId.get(String(done.scheduledEventId))!.completed = ms(e.eventTime);
    }
    let lastDone = ms(events[0]?.eventTime);
    const acts = [...byId.values()].map((a) => {
      const gap = Math.max(0, a.scheduled - lastDone);
      lastDone = Math.max(lastDone, a.completed ?? a.scheduled);
      const short = a.name.replace('Distill', '').replace('executeRequests', 'exec');
      return `${short} +${Math.round(gap)}/${Math.round((a.started ?? a.scheduled) - a.scheduled)}/${Math.round((a.completed ?? 0) - (a.started ?? 0))}`;
    });
    const timeline = [
      `launch (before the run row): ${launch}`,
      `started ${end!.started}`,
      ...steps.map((x) => `${x.step}: rows ${x.prepared}, results ${x.first}–${x.last}`),
      `finished ${end!.finished}`,
    ].join('; ');
    return {
      seconds,
      cpu: (cpu.user + cpu.system) / 1e6,
      rate: rate.join(' '),
      acts: acts.join(', '),
      accepted: out.stages.distill!.ref.accepted,
      requests: Number(r!.n),
      captions: Number(r!.captions),
      tried: tried.join('/'),
      timeline,
    };
  };

  console.log(
    `distill benchmark: ${N} items over ${IMAGES} images, reasoner accuracy ${args.accuracy}, up to ${ATTEMPTS} attempts, latency ${args.latency} ms, concurrency ${CONCURRENCY}`,
  );
  // Warm-up of both paths (JIT, connections, the workflow bundle, the one-time dataset import),
  // on the first 200 items.
  await plainScript(url, items.slice(0, 200), dir, 900);
  await judgeflowRun('warm-up');
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < Number(args.rounds); r++) {
    for (const which of r % 2 === 0 ? ['plain', 'judgeflow'] : ['judgeflow', 'plain']) {
      if (which === 'judgeflow') {
        const res = await judgeflowRun(`r${r}`);
        a.push(res.seconds);
        console.log(
          `  round ${r + 1}: judgeflow distill stage ${res.seconds.toFixed(2)} s (CPU ${res.cpu.toFixed(2)} s): ${res.accepted} accepted, ${res.requests} requests, ${(res.requests / res.accepted).toFixed(3)} requests per accepted trace (${res.captions} captions; items per attempt ${res.tried})\n    timeline (ms after the run row): ${res.timeline}\n    results per 250 ms: ${res.rate}\n    activities (gap since the previous one completed / queued / ran, ms): ${res.acts}`,
        );
      } else {
        const res = await plainScript(url, items, dir, 1000 + r);
        b.push(res.seconds);
        console.log(
          `  round ${r + 1}: plain openai script    ${res.seconds.toFixed(2)} s (CPU ${res.cpu.toFixed(2)} s): ${res.accepted} accepted, ${res.requests} requests, ${(res.requests / res.accepted).toFixed(3)} requests per accepted trace (${res.phases})`,
        );
      }
    }
  }
  const ta = median(a);
  const tb = median(b);
  console.log(`median: judgeflow ${ta.toFixed(2)} s, plain ${tb.toFixed(2)} s; throughput ratio judgeflow/plain = ${(tb / ta).toFixed(2)} (target ≥ 0.8)`);
}

const cleanups = new Cleanups();
try {
  await main(cleanups);
} finally {
  await cleanups.run();
}
