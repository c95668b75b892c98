/**
 * Scale benchmark: does a 100,000-request stage run as comfortably as a 1,000-request one?
 *
 *   npx tsx bench/scale.ts [--sizes 1000,10000,100000] [--concurrency 64] [--latency 0]
 *
 * For each size: the rows are prepared in Postgres, then one workflow runs them through the gateway
 * (`runInference`, default chunking) against the simulator in a child process. Prints, per size:
 * throughput, the worker process's peak resident memory above its level before the run, the
 * workflow's history length, and how long preparing the rows took. The smallest size is the
 * baseline: the larger ones should hold its throughput with memory and history that do not grow
 * with the stage.
 */
import { parseArgs } from 'node:util';
import { endpointSchema } from '../spec/endpoint.js';
import { InferenceGateway, prepareRequests, requestIdRange } from '../activities/inference/index.js';
import type { PrepareRequestRow } from '../activities/inference/types.js';
import { Cleanups, spawnSimulator, startInferenceBench } from './lib.js';

const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1000,10000,100000' },
    concurrency: { type: 'string', default: '64' },
    latency: { type: 'string', default: '0' },
  },
});
const SIZES = args.sizes!.split(',').map(Number);
const CONCURRENCY = Number(args.concurrency);

const cleanups = new Cleanups();
try {
  const { db, client, taskQueue } = await startInferenceBench(cleanups, { name: 'scale', gateway: new InferenceGateway() });
  const url = await spawnSimulator({ seed: 1, latency: { kind: 'fixed', ms: Number(args.latency) }, models: { policy: { behaviour: 'policy' } } }, cleanups);
  const endpoint = endpointSchema.parse({ base_url: url, model: 'policy', concurrency: CONCURRENCY, timeout_s: 60 });

  console.log(`scale benchmark: sizes ${SIZES.join(', ')}, concurrency ${CONCURRENCY}, simulator latency ${args.latency} ms`);
  const lines: string[] = [];
  let baseline: number | undefined;
  for (const n of SIZES) {
    const runId = `scale-${n}-${Date.now()}`;
    const p0 = performance.now();
    for (let from = 0; from < n; from += 10_000) {
      const rows: PrepareRequestRow[] = [];
      for (let i = from; i < Math.min(n, from + 10_000); i++) {
        rows.push({
          runId,
          stageId: 'gen',
          itemKey: `item-${i}`,
          endpoint: 'ep',
          sampleIndex: 0,
          request: {
            messages: [{ role: 'user', content: `scale ${runId} question ${i}: which candidate is best?` }],
            params: { temperature: 0.7, max_tokens: 64 },
          },
        });
      }
      await prepareRequests(db, rows, { ep: endpoint });
    }
    const prepareS = (performance.now() - p0) / 1000;
    const range = await requestIdRange(db, runId, 'gen');

    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 100);
    const t0 = performance.now();
    const result = (await client.workflow.execute('inferenceTestWorkflow', {
      taskQueue,
      workflowId: runId,
      args: [{ runId, stageId: 'gen', endpointName: 'ep', endpoint, ...range, total: range.count }],
    })) as { succeeded: number; sent: number; chunks: number };
    const seconds = (performance.now() - t0) / 1000;
    clearInterval(sampler);
    if (result.succeeded !== n || result.sent !== n) throw new Error(`size ${n}: succeeded ${result.succeeded}, sent ${result.sent}`);
    const history = await client.workflow.getHandle(runId).fetchHistory();
    const rate = n / seconds;
    baseline ??= rate;
    const line =
      `${String(n).padStart(7)} requests: ${rate.toFixed(0).padStart(5)} req/s (x${(rate / baseline).toFixed(2)} of the smallest), ` +
      `peak RSS +${((peak - rss0) / 2 ** 20).toFixed(0)} MiB, ${result.chunks} chunks, ${history.events?.length ?? '?'} history events, ` +
      `rows prepared in ${prepareS.toFixed(1)} s`;
    console.log(line);
    lines.push(line);
  }
  console.log('\n' + lines.join('\n'));
} finally {
  await cleanups.run();
}
