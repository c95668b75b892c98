/**
 * Gateway benchmark: the inference gateway on Temporal vs a plain `openai` loop, side by side.
 *
 *   npx tsx bench/gateway.ts [--requests 2000] [--concurrency 64] [--latencies 0,50] [--rounds 3]
 *
 * For each simulator latency, (a) prepares the requests as rows in Postgres and times a workflow
 * running `runInference` from start to result (Postgres writes included), and (b) times a plain loop
 * of `openai` calls at the same concurrency. The simulator runs in a child process. Prints req/s of
 * both and the ratio (median over rounds, which alternate a and b). Target: ratio >= 0.8 at 50 ms.
 *
 * Env: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres; a temporary database is
 * created there and dropped after), TEMPORAL_ADDRESS (default: a dev server started here).
 */
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { endpointSchema } from '../spec/endpoint.js';
import { InferenceGateway, prepareRequests, requestIdRange } from '../activities/inference/index.js';
import type { PrepareRequestRow } from '../activities/inference/types.js';
import { Cleanups, median, spawnSimulator, startInferenceBench } from './lib.js';

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '64' },
    latencies: { type: 'string', default: '0,50' },
    rounds: { type: 'string', default: '3' },
    'chunk-size': { type: 'string', default: '500' },
    parallel: { type: 'string', default: '2' },
    /** Time only one side (for profiling with --cpu-prof). */
    side: { type: 'string', default: 'both' },
  },
});
const N = Number(args.requests);
const CONCURRENCY = Number(args.concurrency);
const LATENCIES = args.latencies!.split(',').map(Number);
const ROUNDS = Number(args.rounds);
const CHUNK_SIZE = Number(args['chunk-size']);
const PARALLEL = Number(args.parallel);

const cleanups = new Cleanups();

function prompt(tag: string, i: number) {
  return [
    { role: 'system' as const, content: 'You answer briefly.' },
    { role: 'user' as const, content: `bench ${tag} question ${i}: which of the candidates is best?` },
  ];
}

interface Measure {
  /** Requests per second over the timed window. */
  rate: number;
  /** CPU time of this process (all threads: JS, libuv, Temporal's core) per request over the window, µs. */
  cpuUs: number;
}

function startClock(): () => Measure {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  return () => {
    const c = process.cpuUsage(c0);
    return { rate: N / ((performance.now() - t0) / 1000), cpuUs: (c.user + c.system) / N };
  };
}

async function plainLoop(url: string, tag: string): Promise<Measure> {
  const client = new OpenAI({ baseURL: url, apiKey: 'EMPTY', maxRetries: 0, timeout: 60_000 });
  let next = 0;
  const stop = startClock();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < N) {
        const i = next++;
        await client.chat.completions.create({ model: 'policy', messages: prompt(tag, i), temperature: 0.7, max_tokens: 64 });
      }
    }),
  );
  return stop();
}

async function main(): Promise<void> {
  // First HTTP start and last HTTP end of a run: the rest of the wall time is orchestration.
  const window = { first: Infinity, last: 0 };
  const gateway = new InferenceGateway({
    onAttempt: (e) => {
      window.first = Math.min(window.first, e.startedAt);
      window.last = Math.max(window.last, e.endedAt);
    },
  });
  const { db, client, taskQueue } = await startInferenceBench(cleanups, { name: 'gateway', gateway });

  console.log(`gateway benchmark: ${N} requests, concurrency ${CONCURRENCY}, chunks of ${CHUNK_SIZE} x ${PARALLEL} in flight, ${ROUNDS} rounds`);
  const summary: string[] = [];
  for (const latency of LATENCIES) {
    const url = await spawnSimulator({ seed: 1, latency: { kind: 'fixed', ms: latency }, models: { policy: { behaviour: 'policy' } } }, cleanups);
    const overhead: { before: number; after: number }[] = [];
    const endpoint = endpointSchema.parse({ base_url: url, model: 'policy', concurrency: CONCURRENCY, timeout_s: 60 });
    // Warm both paths (JIT, connections, workflow bundle) before timing.
    await plainLoop(url, `warm-${latency}`);
    const gatewayRun = async (tag: string): Promise<Measure> => {
      const runId = `bench-${tag}-${Date.now()}`;
      const rows: PrepareRequestRow[] = Array.from({ length: N }, (_, i) => ({
        runId,
        stageId: 'gen',
        itemKey: `item-${i}`,
        endpoint: 'ep',
        sampleIndex: 0,
        request: { messages: prompt(tag, i), params: { temperature: 0.7, max_tokens: 64 } },
      }));
      await prepareRequests(db, rows, { ep: endpoint });
      const range = await requestIdRange(db, runId, 'gen');
      window.first = Infinity;
      window.last = 0;
      const wall0 = Date.now();
      const stop = startClock();
      const result = await client.workflow.execute('inferenceTestWorkflow', {
        taskQueue,
        workflowId: runId,
        args: [{ runId, stageId: 'gen', endpointName: 'ep', endpoint, ...range, total: range.count, chunkSize: CHUNK_SIZE, parallel: PARALLEL }],
      });
      const measure = stop();
      const wall1 = Date.now();
      overhead.push({ before: window.first - wall0, after: wall1 - window.last });
      const r = result as { succeeded: number; sent: number };
      if (r.succeeded !== N || r.sent !== N) throw new Error(`gateway run ${tag}: succeeded ${r.succeeded}, sent ${r.sent} (expected ${N})`);
      return measure;
    };
    await gatewayRun(`warm-${latency}`);

    const g: number[] = [];
    const p: number[] = [];
    const gCpu: number[] = [];
    const pCpu: number[] = [];
    const gw = async (tag: string) => {
      const m = await gatewayRun(tag);
      g.push(m.rate);
      gCpu.push(m.cpuUs);
    };
    const plain = async (tag: string) => {
      const m = await plainLoop(url, tag);
      p.push(m.rate);
      pCpu.push(m.cpuUs);
    };
    for (let round = 0; round < ROUNDS; round++) {
      const tag = `l${latency}-r${round}`;
      if (args.side === 'gateway') await gw(tag);
      else if (args.side === 'plain') await plain(tag);
      // Alternate the order so drift in machine load hits both sides alike.
      else if (round % 2 === 0) await gw(tag).then(() => plain(tag));
      else await plain(tag).then(() => gw(tag));
      console.log(
        `  latency ${latency} ms, round ${round + 1}: gateway ${g.at(-1)?.toFixed(0)} req/s (${gCpu.at(-1)?.toFixed(0)} µs CPU/req, ` +
          `first request ${overhead.at(-1)?.before} ms after start, result ${overhead.at(-1)?.after} ms after the last response), ` +
          `plain ${p.at(-1)?.toFixed(0)} req/s (${pCpu.at(-1)?.toFixed(0)} µs CPU/req), ratio ${((g.at(-1) ?? NaN) / (p.at(-1) ?? NaN)).toFixed(2)}`,
      );
    }
    if (args.side !== 'both') continue;
    const ratios = g.map((x, i) => x / p[i]!);
    const line =
      `latency ${String(latency).padStart(3)} ms: gateway on Temporal ${median(g).toFixed(0)} req/s, plain openai loop ${median(p).toFixed(0)} req/s, ` +
      `ratio ${median(ratios).toFixed(2)} (median of rounds; best ${Math.max(...ratios).toFixed(2)}); CPU/req ${median(gCpu).toFixed(0)} vs ${median(pCpu).toFixed(0)} µs`;
    console.log(line);
    summary.push(line);
  }
  console.log('\n' + summary.join('\n'));
}

try {
  await main();
} finally {
  await cleanups.run();
}
