/** Shared setup of the inference tests: endpoints on the simulator, prepared batches, workers. */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, NativeConnection, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { Db } from '../../db/client.js';
import { endpointSchema, type EndpointSpec } from '../../spec/endpoint.js';
import {
  createInferenceActivities,
  InferenceGateway,
  prepareRequests,
  requestIdRange,
  type InferenceGatewayOptions,
} from '../../activities/inference/index.js';
import type { PrepareRequestRow, SamplingParams } from '../../activities/inference/types.js';
import type { SimConfigInput } from '../../sim/config.js';
import type { SimStats } from '../../sim/server.js';

export const INFERENCE_TEST_WORKFLOWS = fileURLToPath(new URL('./workflows.ts', import.meta.url));

export function requireEnv(name: 'JF_TEST_DATABASE_URL' | 'JF_TEST_TEMPORAL_ADDRESS'): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests with \`npx vitest run\` (the global setup provides it)`);
  return v;
}

export function uniqueId(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

export function endpoint(baseUrl: string, fields: Partial<Record<keyof EndpointSpec, unknown>> = {}): EndpointSpec {
  return endpointSchema.parse({ base_url: baseUrl, model: 'policy', ...fields });
}

/** `n` distinct requests for one stage; item i's text is `question ${i}` unless `text` says otherwise. */
export function batchRows(
  runId: string,
  stageId: string,
  n: number,
  opts: { endpoint?: string; params?: SamplingParams; text?: (i: number) => string } = {},
): PrepareRequestRow[] {
  return Array.from({ length: n }, (_, i) => ({
    runId,
    stageId,
    itemKey: `item-${i}`,
    endpoint: opts.endpoint ?? 'ep',
    sampleIndex: 0,
    request: {
      messages: [
        { role: 'system' as const, content: 'You answer briefly.' },
        { role: 'user' as const, content: opts.text?.(i) ?? `question ${i} of ${stageId}` },
      ],
      params: opts.params ?? { temperature: 0.7, max_tokens: 64 },
    },
  }));
}

export async function prepareBatch(db: Db, rows: PrepareRequestRow[], ep: EndpointSpec) {
  const first = rows[0]!;
  await prepareRequests(db, rows, { [first.endpoint]: ep });
  return requestIdRange(db, first.runId, first.stageId);
}

/** Runs an activity function outside a worker (heartbeats collected). */
export function activityEnv(heartbeatDetails?: unknown) {
  const env = new MockActivityEnvironment(heartbeatDetails === undefined ? {} : { heartbeatDetails });
  const heartbeats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => heartbeats.push(d));
  return { env, heartbeats };
}

export function activitiesFor(db: Db, options: InferenceGatewayOptions = {}) {
  const gateway = new InferenceGateway(options);
  return { gateway, activities: createInferenceActivities({ db, gateway }) };
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;
export function inferenceBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({
    workflowsPath: INFERENCE_TEST_WORKFLOWS,
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} } as never,
  });
  return bundle;
}

/** A worker in this process running the test workflows and the inference activities. */
export async function startInferenceWorker(db: Db, taskQueue: string, gatewayOptions: InferenceGatewayOptions = {}) {
  const connection = await NativeConnection.connect({ address: requireEnv('JF_TEST_TEMPORAL_ADDRESS') });
  const { gateway, activities } = activitiesFor(db, gatewayOptions);
  const worker = await Worker.create({
    connection,
    taskQueue,
    workflowBundle: await inferenceBundle(),
    activities,
    maxConcurrentActivityTaskExecutions: 20,
  });
  const run = worker.run();
  return {
    gateway,
    async shutdown() {
      worker.shutdown();
      await run;
      await connection.close();
    },
  };
}

/**
 * The simulator in its own process (`sim/main.ts`), so it does not share the event loop with the
 * worker under test. Stats come from `GET /sim/stats`.
 */
export async function spawnSimulator(config: SimConfigInput): Promise<{ url: string; stats(): Promise<SimStats>; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'jf-sim-'));
  const configPath = join(dir, 'sim.json');
  writeFileSync(configPath, JSON.stringify(config));
  const main = fileURLToPath(new URL('../../sim/main.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', main, '--port', '0', '--config', configPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.once('exit', (code) => reject(new Error(`simulator exited early (${code}): ${out}`)));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
  });
  child.removeAllListeners('exit');
  const root = url.replace(/\/v1$/, '');
  return {
    url,
    async stats() {
      const res = await fetch(`${root}/sim/stats`);
      return (await res.json()) as SimStats;
    },
    async close() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
