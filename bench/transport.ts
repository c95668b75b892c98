/**
 * Transport benchmark: the `openai` client on Node's built-in fetch vs on the gateway's `nodeFetch`
 * (activities/inference/transport.ts), side by side in one process.
 *
 *   npx tsx bench/transport.ts [--requests 2000] [--concurrency 64] [--latencies 0,50] [--rounds 4]
 *
 * Same client options, same calls, same simulator (in a child process); rounds alternate the order.
 * Prints req/s and CPU per call (this process, all threads) for both, and the ratios.
 */
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { nodeFetch } from '../activities/inference/transport.js';
import { Cleanups, median, spawnSimulator } from './lib.js';

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '64' },
    latencies: { type: 'string', default: '0,50' },
    rounds: { type: 'string', default: '4' },
  },
});
const N = Number(args.requests);
const C = Number(args.concurrency);

async function loop(client: OpenAI, tag: string): Promise<{ rate: number; cpuUs: number }> {
  let next = 0;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (next < N) {
        const i = next++;
        const r = await client.chat.completions.create({
          model: 'policy',
          messages: [{ role: 'user', content: `bench ${tag} ${i}` }],
          max_tokens: 64,
          temperature: 0.7,
        });
        if (!r.choices[0]?.message) throw new Error(`call ${i}: no message in the response`);
      }
    }),
  );
  const cpu = process.cpuUsage(c0);
  return { rate: N / ((performance.now() - t0) / 1000), cpuUs: (cpu.user + cpu.system) / N };
}

const cleanups = new Cleanups();
try {
  console.log(`transport benchmark: ${N} calls at concurrency ${C}, ${args.rounds} rounds per latency`);
  for (const latency of args.latencies!.split(',').map(Number)) {
    const url = await spawnSimulator({ seed: 1, latency: { kind: 'fixed', ms: latency }, models: { policy: { behaviour: 'policy' } } }, cleanups);
    const sides = {
      'built-in fetch': new OpenAI({ baseURL: url, apiKey: 'EMPTY', maxRetries: 0, timeout: 60_000 }),
      nodeFetch: new OpenAI({ baseURL: url, apiKey: 'EMPTY', maxRetries: 0, timeout: 60_000, fetch: nodeFetch() }),
    };
    const results: Record<string, { rate: number[]; cpu: number[] }> = {};
    for (const [name, client] of Object.entries(sides)) await loop(client, `warm-${name}`);
    for (let round = 0; round < Number(args.rounds); round++) {
      const order = Object.entries(sides);
      if (round % 2 === 1) order.reverse();
      for (const [name, client] of order) {
        const m = await loop(client, `l${latency}-r${round}-${name}`);
        const r = (results[name] ??= { rate: [], cpu: [] });
        r.rate.push(m.rate);
        r.cpu.push(m.cpuUs);
      }
    }
    const a = results['built-in fetch']!;
    const b = results.nodeFetch!;
    console.log(
      `latency ${String(latency).padStart(3)} ms: built-in fetch ${median(a.rate).toFixed(0)} req/s (${median(a.cpu).toFixed(0)} µs CPU/call), ` +
        `nodeFetch ${median(b.rate).toFixed(0)} req/s (${median(b.cpu).toFixed(0)} µs CPU/call); ` +
        `throughput x${(median(b.rate) / median(a.rate)).toFixed(2)}, CPU per call x${(median(b.cpu) / median(a.cpu)).toFixed(2)}`,
    );
  }
} finally {
  await cleanups.run();
}
