/**
 * The `openai` backend against a fake fine-tuning server over real HTTP (the real openai client):
 * upload, a job keyed in metadata (looked up before creating), status, events as log and metrics,
 * the fine-tuned model as the checkpoint, and cancel.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchRun } from '../../cli/launch.js';
import type { DbHandle } from '../../db/client.js';
import '../../spec/builtin.js';
import type { RunningWorker } from '../../worker.js';
import { openTestDb, testClient, uniqueName } from '../helpers/env.js';
import { specFromObject } from '../helpers/spec.js';
import { jobRows, runResult, SFT_FIXTURE, startTrainWorker, waitFor } from './helpers.js';

interface FakeJob {
  id: string;
  object: 'fine_tuning.job';
  model: string;
  status: string;
  created_at: number;
  training_file: string;
  fine_tuned_model: string | null;
  metadata: Record<string, string>;
  hyperparameters: Record<string, unknown>;
  error: null;
  events: { id: string; object: 'fine_tuning.job.event'; created_at: number; level: string; message: string; type: string; data?: unknown }[];
  polls: number;
}

/** A fine-tuning API: a job validates, runs three steps (one per status read), then succeeds; model "slow" never ends. */
function fakeFineTuning() {
  const files = new Map<string, string>();
  const jobs: FakeJob[] = [];
  const event = (j: FakeJob, message: string, type = 'message', data?: unknown) =>
    j.events.push({
      id: `ev-${j.events.length}`,
      object: 'fine_tuning.job.event',
      created_at: j.created_at + j.events.length,
      level: 'info',
      message,
      type,
      ...(data ? { data } : {}),
    });
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url!, 'http://x');
      const send = (status: number, obj: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(obj));
      };
      const m = /^\/v1\/fine_tuning\/jobs(?:\/([^/]+))?(?:\/(events|cancel))?$/.exec(url.pathname);
      if (req.method === 'POST' && url.pathname === '/v1/files') {
        const text = body.toString('utf8');
        const start = text.indexOf('\r\n\r\n', text.indexOf('filename=')) + 4;
        const content = text.slice(start, text.indexOf('\r\n--', start));
        const id = `file-${files.size + 1}`;
        files.set(id, content);
        return send(200, { id, object: 'file', bytes: content.length, created_at: 1, filename: 'train.jsonl', purpose: 'fine-tune', status: 'processed' });
      }
      if (!m) return send(404, { error: { message: `no route ${req.method} ${url.pathname}` } });
      const [, id, sub] = m;
      if (!id && req.method === 'POST') {
        const p = JSON.parse(body.toString('utf8')) as {
          model: string;
          training_file: string;
          metadata?: Record<string, string>;
          hyperparameters?: Record<string, unknown>;
        };
        if (!files.has(p.training_file)) return send(400, { error: { message: `no file ${p.training_file}` } });
        const j: FakeJob = {
          id: `ftjob-${jobs.length + 1}`,
          object: 'fine_tuning.job',
          model: p.model,
          status: 'validating_files',
          created_at: 1_800_000_000 + jobs.length * 100,
          training_file: p.training_file,
          fine_tuned_model: null,
          metadata: p.metadata ?? {},
          hyperparameters: p.hyperparameters ?? {},
          error: null,
          events: [],
          polls: 0,
        };
        event(j, 'Validating training file');
        jobs.push(j);
        return send(200, j);
      }
      if (!id) {
        const filters = [...url.searchParams].filter(([k]) => /^metadata\[.+\]$/.test(k)).map(([k, v]) => [k.slice(9, -1), v] as const);
        return send(200, { object: 'list', data: jobs.filter((j) => filters.every(([k, v]) => j.metadata[k] === v)), has_more: false });
      }
      const j = jobs.find((x) => x.id === id);
      if (!j) return send(404, { error: { message: `no job ${id}` } });
      if (sub === 'events') return send(200, { object: 'list', data: [...j.events].reverse(), has_more: false });
      if (sub === 'cancel') {
        if (j.status === 'succeeded' || j.status === 'failed' || j.status === 'cancelled') return send(400, { error: { message: 'job already ended' } });
        j.status = 'cancelled';
        event(j, 'Job cancelled');
        return send(200, j);
      }
      j.polls++;
      if (j.model !== 'slow') {
        if (j.status === 'validating_files') j.status = 'running';
        else if (j.status === 'running') {
          const step = j.events.filter((e) => e.type === 'metrics').length + 1;
          if (step <= 3) event(j, `Step ${step}/3: training loss=${(2 / step).toFixed(2)}`, 'metrics', { step, train_loss: 2 / step });
          else {
            j.status = 'succeeded';
            j.fine_tuned_model = `ft:${j.model}:judgeflow:${j.id}`;
            event(j, 'The job has successfully completed');
          }
        }
      } else if (j.status === 'validating_files') j.status = 'running';
      return send(200, j);
    });
  });
  return { server, files, jobs };
}

const fake = fakeFineTuning();
let base: string;
let db: DbHandle;
let client: Client;
let closeClient: () => Promise<void>;
let worker: RunningWorker;
const tq = uniqueName('train-openai');

beforeAll(async () => {
  await new Promise<void>((r) => fake.server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}/v1`;
  db = await openTestDb();
  ({ client, close: closeClient } = await testClient());
  worker = await startTrainWorker(tq, { stateDir: mkdtempSync(join(tmpdir(), 'jf-train-openai-')) });
});
afterAll(async () => {
  await worker?.shutdown();
  await closeClient?.();
  await db?.close();
  await new Promise((r) => fake.server.close(r));
});

function spec(name: string, model: string) {
  return {
    name,
    seed: 5,
    stages: [
      { id: 'sft', uses: 'test-sft', with: { path: SFT_FIXTURE } },
      {
        id: 'train',
        uses: 'train',
        needs: ['sft'],
        with: {
          data: { from: 'sft' },
          base_model: model,
          backend: { type: 'openai', base_url: base },
          hyperparams: { n_epochs: 1, max_steps: 9 },
          poll_s: 0.5,
        },
      },
    ],
  };
}

describe('openai fine-tuning backend', () => {
  it('uploads the chat JSONL with inlined images, creates one keyed job, records metrics and the fine-tuned model', async () => {
    const loaded = await specFromObject(spec(uniqueName('train-openai'), 'smollm2-135m'));
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    expect(await runResult(client, runId)).toEqual({ ok: true });
    const [job] = await jobRows(db.pool, runId);
    const created = fake.jobs.filter((j) => j.metadata.judgeflow_key === job!.job_key);
    expect(created).toHaveLength(1);
    expect(job).toMatchObject({ backend: 'openai', state: 'succeeded', job_id: created[0]!.id });
    // Only the API's own hyper-parameters are sent.
    expect(created[0]!.hyperparameters).toEqual({ n_epochs: 1 });
    const lines = fake.files
      .get(created[0]!.training_file)!
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { messages: { role: string; content: string | { type: string; image_url?: { url: string }; text?: string }[] }[] });
    expect(lines).toHaveLength(48);
    const user = lines[0]!.messages[0]!.content as { type: string; image_url?: { url: string }; text?: string }[];
    expect(user.map((p) => p.type)).toEqual(['image_url', 'text']);
    expect(user[0]!.image_url!.url).toMatch(/^data:image\/png;base64,iVBORw0KGgo/);
    expect(lines[0]!.messages[1]!.content).toMatch(/<answer>[AB]<\/answer>$/);
    const metrics = (await db.pool.query<{ step: number; loss: number }>('select step, loss from train_metrics where run_id = $1 order by step', [runId])).rows;
    expect(metrics).toEqual([
      { step: 1, loss: 2 },
      { step: 2, loss: 1 },
      { step: 3, loss: 2 / 3 },
    ]);
    const [ckpt] = (
      await db.pool.query<{ source: string; summary: { final_metrics: { steps: number; final_loss: number } } }>(
        `select source, summary from artifacts where run_id = $1 and kind = 'checkpoint'`,
        [runId],
      )
    ).rows;
    expect(ckpt!.source).toBe(`openai:ft:smollm2-135m:judgeflow:${created[0]!.id}`);
    expect(ckpt!.summary.final_metrics).toEqual({ steps: 3, first_loss: 2, final_loss: 2 / 3 });
    expect(job!.log_tail).toContain('The job has successfully completed');
  });

  it('a cancelled run cancels the fine-tuning job', async () => {
    const loaded = await specFromObject(spec(uniqueName('train-openai-cancel'), 'slow'));
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
    const running = await waitFor('the job to run', 60_000, async () => (await jobRows(db.pool, runId)).find((j) => j.state === 'running'));
    await client.workflow.getHandle(runId).cancel();
    await waitFor('the API to say cancelled', 60_000, async () => fake.jobs.find((j) => j.id === running.job_id)!.status === 'cancelled');
    await waitFor('the cancel to be recorded', 30_000, async () => (await jobRows(db.pool, runId))[0]!.state === 'cancelled');
  });
});
