/**
 * The `synthesize` stage on Temporal vs a plain `openai` script making the same calls.
 *
 *   npx tsx bench/synthesize.ts [--items 2000] [--error-types 3] [--concurrency 64] [--latency 50] [--large 20000]
 *
 * Items are a generated qa-jsonl set (64 distinct PNGs) imported as an artifact. (a) times the
 * stage workflow from start to result: request rows, inference through the gateway, filtering and
 * the multiple-choice items written, the artifact sealed; (b) times a plain loop of `openai` calls
 * with the same messages (image as a data URL) at the same concurrency. Prints req/s of both and
 * the ratio (target >= 0.8 at 50 ms). `--large N` instead runs the stage on N items on a worker in
 * its own process and prints the history events, chunks and that worker's peak RSS (target
 * < 500 MB). The simulator runs in a child process.
 *
 * Env: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres; a temporary database is
 * created there and dropped after), TEMPORAL_ADDRESS (default: a dev server started here).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { createActivities } from '../activities/index.js';
import { importSource } from '../activities/datasets/index.js';
import { InferenceGateway } from '../activities/inference/index.js';
import { renderNegativePrompt } from '../activities/synthesize/core.js';
import { endpointSchema } from '../spec/endpoint.js';
import { synthesizeParams, templateFor } from '../spec/kinds/synthesize.js';
import type { StageInput, StageOutput } from '../workflows/types.js';
import { Cleanups, REPO, spawnSimulator, startScratchWorker } from './lib.js';

const { values: args } = parseArgs({
  options: {
    items: { type: 'string', default: '2000' },
    'error-types': { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '64' },
    latency: { type: 'string', default: '50' },
    large: { type: 'string', default: '0' },
  },
});
const ITEMS = Number(args.items);
const CONCURRENCY = Number(args.concurrency);
const ERROR_TYPES = ['hallucination', 'incompleteness', 'faulty_reasoning', 'wrong_knowledge'].slice(0, Number(args['error-types']));
const LARGE = Number(args.large);
const cleanups = new Cleanups();

/** PNG magic + a distinct body: what the loaders and the simulator need of an image. */
const png = (n: number) => Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(2048, n)]);
const COLOURS = ['red', 'blue', 'green', 'yellow', 'black', 'white'];

function writeItems(dir: string, n: number): string {
  mkdirSync(join(dir, 'img'), { recursive: true });
  for (let i = 0; i < 64; i++) writeFileSync(join(dir, 'img', `${i}.png`), png(i));
  const lines = Array.from({ length: n }, (_, i) =>
    JSON.stringify({
      id: `q${i}`,
      image: `img/${i % 64}.png`,
      question: `What colour is shape ${i}?`,
      answer: `The shape ${i} is ${COLOURS[i % COLOURS.length]} and sits on the left.`,
    }),
  );
  const path = join(dir, `qa-${n}.jsonl`);
  writeFileSync(path, lines.join('\n'));
  return path;
}

async function main(): Promise<void> {
  const { handle, dbUrl, client, taskQueue, address } = await startScratchWorker(cleanups, {
    name: 'synthesize',
    workflowsPath: join(REPO, 'workflows', 'index.ts'),
    activities: (db) => createActivities({ db, gateway: new InferenceGateway() }),
  });

  const url = await spawnSimulator(
    {
      seed: 1,
      latency: { kind: 'fixed', ms: Number(args.latency) },
      models: { writer: { behaviour: 'negatives', identical_rate: 0.05, empty_rate: 0.03, refusal_rate: 0.03 } },
    },
    cleanups,
  );
  const endpoint = endpointSchema.parse({ base_url: url, model: 'writer', concurrency: CONCURRENCY, timeout_s: 60 });
  const dir = mkdtempSync(join(tmpdir(), 'jf-bench-synth-'));
  cleanups.add(() => rmSync(dir, { recursive: true, force: true }));

  const stage = async (items: number, seed: number, queue = taskQueue) => {
    const path = writeItems(dir, items);
    const { artifactId } = await importSource(handle.db, { name: 'bench', path, format: 'qa-jsonl' });
    const params = synthesizeParams.parse({ items: 'bench', writer: 'writer', error_types: ERROR_TYPES, k: 3 });
    const runId = `bench-synth-${seed}-${Date.now()}`;
    const input: StageInput = {
      runId,
      stageId: 'synth',
      kind: 'synthesize',
      seed,
      params,
      endpoints: { writer: endpoint },
      datasets: { bench: { name: 'bench', artifactId } },
      inputs: {},
    };
    const t0 = performance.now();
    const out = (await client.workflow.execute('synthesizeStage', { taskQueue: queue, workflowId: runId, args: [input] })) as StageOutput;
    const seconds = (performance.now() - t0) / 1000;
    const requests = items * ERROR_TYPES.length;
    if (out.items?.done !== requests) throw new Error(`stage finished ${out.items?.done} of ${requests} requests`);
    return { runId, seconds, rate: requests / seconds, out };
  };

  const plain = async (items: number, seed: number) => {
    const openai = new OpenAI({ baseURL: url, apiKey: 'EMPTY', maxRetries: 0, timeout: 60_000 });
    const params = synthesizeParams.parse({ items: 'bench', writer: 'writer', error_types: ERROR_TYPES });
    const dataUrls = Array.from({ length: 64 }, (_, i) => `data:image/png;base64,${png(i).toString('base64')}`);
    const jobs: { i: number; type: string }[] = [];
    for (let i = 0; i < items; i++) for (const type of ERROR_TYPES) jobs.push({ i, type });
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < jobs.length) {
          const { i, type } = jobs[next++]!;
          const text = renderNegativePrompt(templateFor(params, type)!, {
            question: `What colour is shape ${i}?`,
            reference: `The shape ${i} is ${COLOURS[i % COLOURS.length]} and sits on the left.`,
            errorType: type,
          });
          await openai.chat.completions.create({
            model: 'writer',
            messages: [
              {
                role: 'user',
                content: [
                  { type: 'image_url', image_url: { url: dataUrls[i % 64]! } },
                  { type: 'text', text },
                ],
              },
            ],
            temperature: params.temperature,
            max_tokens: params.max_tokens,
            seed,
          });
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    return { seconds, rate: jobs.length / seconds };
  };

  if (LARGE > 0) {
    // The worker users run (bin/worker.mjs: the compiled worker with the prebuilt workflow bundle
    // after `npm run build`), in its own process, so its peak RSS (VmHWM) is the worker's alone.
    const queue = `${taskQueue}-large`;
    const child = spawn(process.execPath, [join(REPO, 'bin', 'worker.mjs')], {
      env: { ...process.env, DATABASE_URL: dbUrl, TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: 'default', JUDGEFLOW_TASK_QUEUE: queue },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    cleanups.add(() => void child.kill('SIGTERM'));
    await new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`worker exited (${code})`)));
      child.stdout!.on('data', (d: Buffer) => d.toString().includes('judgeflow worker: task queue') && resolve());
    });
    console.log(
      `worker: ${join(REPO, 'bin', 'worker.mjs')} (pid ${child.pid}), RSS at start ${((Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]) || 0) / 1024).toFixed(0)} MB`,
    );
    const big = await stage(LARGE, 77, queue);
    const peak = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1];
    const history = await client.workflow.getHandle(big.runId).fetchHistory();
    const events = history.events?.length ?? 0;
    const chunks = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'buildSynthesisChunk').length;
    console.log(
      `large run: ${LARGE} items × ${ERROR_TYPES.length} = ${LARGE * ERROR_TYPES.length} requests in ${big.seconds.toFixed(1)} s (${big.rate.toFixed(0)} req/s); ` +
        `${events} history events, ${chunks} chunks, peak worker RSS ${peak ? (Number(peak) / 1024).toFixed(0) : '?'} MB (target < 500), ${big.out.ref.items} items`,
    );
    return;
  }

  console.log(`synthesize benchmark: ${ITEMS} items × ${ERROR_TYPES.length} error types, concurrency ${CONCURRENCY}, simulator latency ${args.latency} ms`);
  await plain(200, 999); // warm up connections and JIT on both sides
  await stage(200, 998);
  const rounds: { s: number; p: number }[] = [];
  for (let r = 0; r < 2; r++) {
    // Alternate the order so drift in machine load hits both sides alike.
    const first = r % 2 === 0 ? await stage(ITEMS, 10 + r) : await plain(ITEMS, 20 + r);
    const second = r % 2 === 0 ? await plain(ITEMS, 20 + r) : await stage(ITEMS, 10 + r);
    const [st, pl] = r % 2 === 0 ? [first, second] : [second, first];
    rounds.push({ s: st.rate, p: pl.rate });
    console.log(
      `  round ${r + 1}: stage ${st.rate.toFixed(0)} req/s (${st.seconds.toFixed(1)} s), plain openai ${pl.rate.toFixed(0)} req/s (${pl.seconds.toFixed(1)} s), ratio ${(st.rate / pl.rate).toFixed(2)}`,
    );
  }
  const best = rounds.map((x) => x.s / x.p);
  console.log(`ratio stage / plain: ${best.map((x) => x.toFixed(2)).join(', ')} (target >= 0.8)`);
}

try {
  await main();
} finally {
  await cleanups.run();
}
