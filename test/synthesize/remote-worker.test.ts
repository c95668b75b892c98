/**
 * A worker on "another machine": the launch imports a qa-jsonl file (with bad rows) into an
 * artifact, the spec's folder is then deleted, and a worker started in another working directory
 * runs the synthesize stage from ids alone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchRun } from '../../cli/launch.js';
import { runArtifacts } from '../../db/artifacts.js';
import type { DbHandle } from '../../db/client.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import '../../spec/builtin.js';
import { loadSpec } from '../../spec/load.js';
import { REPO, openTestDb, testClient, testDatabaseUrl, testTemporalAddress, uniqueName } from '../helpers/env.js';
import '../helpers/kinds.js';

let db: DbHandle;
let sim: SimHandle;
let child: ChildProcess | undefined;

beforeAll(async () => {
  db = await openTestDb();
  sim = await startSimulator({ seed: 5, models: { writer: { behaviour: 'negatives' } } });
});
afterAll(async () => {
  child?.kill('SIGTERM');
  await sim?.close();
  await db?.close();
});

/** Bytes that read as a PNG (magic number) and differ per image. */
const png = (n: number) => Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from(`image ${n}`)]);

function writeFixture(dir: string): void {
  mkdirSync(join(dir, 'img'));
  const lines: string[] = [];
  for (let i = 0; i < 20; i++) {
    writeFileSync(join(dir, 'img', `${i}.png`), png(i));
    lines.push(JSON.stringify({ id: `q${i}`, image: `img/${i}.png`, question: `What is shown in picture ${i}?`, answer: `A red cube number ${i}.` }));
  }
  writeFileSync(join(dir, 'img', 'notes.png'), 'this is text, not an image');
  lines.push('{"id": "broken", "image": ');
  lines.push(JSON.stringify({ id: 'no-file', image: 'img/missing.png', question: 'What?', answer: 'Something.' }));
  lines.push(JSON.stringify({ id: 'text', image: 'img/notes.png', question: 'What?', answer: 'Something.' }));
  lines.push(JSON.stringify({ id: 'blank', image: 'img/1.png', question: 'What colour?', answer: '  ' }));
  lines.push(JSON.stringify({ id: 'q3', image: 'img/4.png', question: 'Another question?', answer: 'Another answer.' }));
  lines.push(
    JSON.stringify({ id: 'inline', image: `data:image/png;base64,${png(99).toString('base64')}`, question: 'What is inline?', answer: 'A blue sphere.' }),
  );
  writeFileSync(join(dir, 'qa.jsonl'), `${lines.join('\n')}\n`);
}

function spawnWorker(taskQueue: string, cwd: string): Promise<ChildProcess> {
  const tsx = import.meta.resolve('tsx');
  const proc = spawn(process.execPath, ['--import', tsx, join(REPO, 'test', 'helpers', 'worker-child.ts')], {
    cwd,
    env: { ...process.env, DATABASE_URL: testDatabaseUrl(), TEMPORAL_ADDRESS: testTemporalAddress(), TASK_QUEUE: taskQueue },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`worker child exited early (${code})`)));
    proc.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('worker-ready')) resolve(proc);
    });
  });
}

describe('a stage runs on a worker that cannot read the spec folder', () => {
  it('imports at launch (skipped rows counted), then synthesizes from artifact ids alone', async () => {
    const specDir = mkdtempSync(join(tmpdir(), 'jf-remote-spec-'));
    writeFixture(specDir);
    const tq = uniqueName('remote');
    writeFileSync(
      join(specDir, 'spec.yaml'),
      [
        `name: ${uniqueName('remote')}`,
        'seed: 3',
        `endpoints: { writer: { base_url: "${sim.url}", model: writer, concurrency: 8 } }`,
        'datasets: { qa: { path: qa.jsonl } }',
        'stages:',
        '  - { id: synth, uses: synthesize, with: { items: qa, writer: writer, error_types: [hallucination, wrong_knowledge], k: 3 } }',
      ].join('\n'),
    );
    const loaded = await loadSpec(join(specDir, 'spec.yaml'));
    expect(loaded.warnings.join('\n')).toMatch(/datasets\.qa: 5 row\(s\) skipped/);
    const { client, close } = await testClient();
    try {
      const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: tq });
      // The files are gone before any worker exists: the stage must not need them.
      rmSync(specDir, { recursive: true, force: true });
      const elsewhere = mkdtempSync(join(tmpdir(), 'jf-remote-cwd-'));
      child = await spawnWorker(tq, elsewhere);
      await client.workflow.getHandle(runId).result();

      const plan = (await db.pool.query<{ plan: { datasets: Record<string, Record<string, unknown>> }[] }>('select plan from runs where id = $1', [runId]))
        .rows[0]!.plan;
      expect(plan[0]!.datasets.qa).not.toHaveProperty('path');
      expect(plan[0]!.datasets.qa!.artifactId).toEqual(expect.any(Number));

      const arts = await runArtifacts(db.db, runId);
      const source = arts.find((a) => a.kind === 'qa-items')!;
      expect(source.summary).toEqual({
        source_rows: 26,
        imported: 21,
        skipped: 5,
        skipped_by_reason: { 'invalid JSON': 1, 'unreadable image': 1, 'not an image': 1, 'empty answer': 1, 'duplicate id': 1 },
      });
      const items = arts.find((a) => a.stageId === 'synth')!;
      expect(items.rows).toBe(21);
      const [req] = (await db.pool.query<{ n: number }>('select count(*)::int as n from inference_requests where run_id = $1', [runId])).rows;
      expect(req!.n).toBe(21 * 2);
    } finally {
      child?.kill('SIGTERM');
      await close();
    }
  });
});
