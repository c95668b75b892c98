/**
 * A launch reads a dataset once: the spec check's load (which finds skipped rows and refuses a
 * source with none valid) is what the launch imports, so a file's URL images are downloaded once
 * per launch, not once by the check and again by the import.
 */
import { createServer, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planGroup } from '../../cli/ablation-group.js';
import { launchRun } from '../../cli/launch.js';
import { runArtifacts } from '../../db/artifacts.js';
import type { DbHandle } from '../../db/client.js';
import '../../spec/builtin.js';
import { loadSpec } from '../../spec/load.js';
import { openTestDb, testClient, uniqueName } from '../helpers/env.js';
import { writeSpec } from '../helpers/spec.js';

/** Bytes that read as a PNG and differ per image. */
const png = (n: number) => Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from(`url image ${n} ${uniqueName('x')}`)]);

let db: DbHandle;
let server: Server;
let base: string;
const hits = new Map<string, number>();
const images = [png(0), png(1), png(2)];

beforeAll(async () => {
  db = await openTestDb();
  server = createServer((req, res) => {
    hits.set(req.url!, (hits.get(req.url!) ?? 0) + 1);
    const m = /^\/img\/(\d+)\.png$/.exec(req.url!);
    const body = m ? images[Number(m[1])] : undefined;
    if (!body) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'image/png' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => server?.close(() => resolve()));
  await db?.close();
});

describe('a launch reads its datasets once', () => {
  it('downloads each URL image of a qa-jsonl file once: the check finds the bad row, the import stores what the check loaded', async () => {
    const qaLines = [
      ...images.map((_, i) => ({ id: `u${i}`, image: `${base}/img/${i}.png`, question: `What is in picture ${i}?`, answer: `Shape ${i}.` })),
      { id: 'gone', image: `${base}/img/404.png`, question: 'What?', answer: 'Nothing.' },
    ];
    const specPath = writeSpec({
      name: uniqueName('url-once'),
      endpoints: { w: { base_url: 'http://127.0.0.1:9/v1', model: 'writer' } },
      datasets: { qa: { path: 'qa.jsonl', format: 'qa-jsonl', limit: 2 } },
      stages: [{ id: 'synth', uses: 'synthesize', with: { items: 'qa', writer: 'w' } }],
    });
    writeFileSync(join(dirname(specPath), 'qa.jsonl'), `${qaLines.map((l) => JSON.stringify(l)).join('\n')}\n`);

    const loaded = await loadSpec(specPath);
    expect(loaded.warnings.join('\n')).toMatch(/datasets\.qa: 1 row\(s\) skipped: line 4: unreadable image/);
    // The check's load, whole (limit 2 applies in the stage), kept for the import.
    expect(loaded.sources?.get('qa')?.items).toHaveLength(3);
    const { client, close } = await testClient();
    try {
      // No worker listens on this queue: the launch (import, rows, workflow start) is what is measured.
      const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: uniqueName('nobody') });
      try {
        expect(Object.fromEntries(hits)).toEqual({ '/img/0.png': 1, '/img/1.png': 1, '/img/2.png': 1, '/img/404.png': 1 });
        // Imported: the launch holds the loads no longer.
        expect(loaded.sources).toBeUndefined();
        const source = (await runArtifacts(db.db, runId)).find((a) => a.kind === 'qa-items')!;
        // The whole file is imported (limit applies in the stage), the bad row counted.
        expect(source.rows).toBe(3);
        expect(source.summary).toMatchObject({ source_rows: 4, imported: 3, skipped: 1, skipped_by_reason: { 'unreadable image': 1 } });
        const stored = await db.pool.query<{ size: number }>(
          'select b.size from qa_items q join blobs b on b.hash = q.image_hash where q.artifact_id = $1 order by q.idx',
          [source.id],
        );
        expect(stored.rows.map((r) => r.size)).toEqual(images.map((b) => b.length));
      } finally {
        await client.workflow.getHandle(runId).terminate('test: launch only');
      }
    } finally {
      await close();
    }
  });

  it('an ablation group keeps no member loads until its launch (one copy per member otherwise)', async () => {
    const path = writeSpec({
      name: uniqueName('group-loads'),
      endpoints: { w: { base_url: 'http://127.0.0.1:9/v1', model: 'writer' } },
      datasets: { easy: { format: 'easy-vqa', split: 'test', limit: 5 } },
      stages: [{ id: 'synth', uses: 'synthesize', with: { items: 'easy', writer: 'w', k: 2 } }],
      ablations: { axes: { 'stages.synth.with.k': [2, 3] } },
    });
    const loaded = await loadSpec(path);
    expect(loaded.sources?.get('easy')?.items.length).toBeGreaterThan(5);
    const group = await planGroup(loaded, { sets: [] });
    expect(group.members).toHaveLength(2);
    expect(group.members.map((m) => m.loaded.sources)).toEqual([undefined, undefined]);
    expect(loaded.sources).toBeUndefined();
  });
});
