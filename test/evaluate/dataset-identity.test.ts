/**
 * A launch finds an already-imported multiple-choice file by its bytes' hash without parsing it
 * (activities/datasets: `fileIdentity` before `loadSource`). These pin that the short cut returns
 * exactly the artifact the full load would: the same one for the same bytes, never the one of a load
 * that read images (from a folder or from URLs), and the same rows and skipped counts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importSource } from '../../activities/datasets/index.js';
import { fileIdentity, loadDataset } from '../../activities/datasets/mc.js';
import type { DbHandle } from '../../db/client.js';
import { openTestDb } from '../helpers/env.js';

const PNG = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex');
let db: DbHandle;
let dir: string;
let server: http.Server;
let base: string;
// Unique rows per test run: artifacts are shared by every file of the suite, keyed by content hash.
const nonce = randomUUID();

const vlrb = (i: number) =>
  JSON.stringify({
    id: `${nonce}-${i}`,
    image_path: `images/${i}.png`,
    query: `query ${i}`,
    response: [`first ${i}`, `second ${i}`],
    human_ranking: [i % 2, (i + 1) % 2],
  });

beforeAll(async () => {
  db = await openTestDb();
  dir = mkdtempSync(join(tmpdir(), 'jf-ds-identity-'));
  mkdirSync(join(dir, 'images'));
  for (let i = 0; i < 4; i++) writeFileSync(join(dir, 'images', `${i}.png`), Buffer.concat([PNG, Buffer.from([i])]));
  server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'image/png' });
    res.end(PNG);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await db?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('dataset identity without parsing', () => {
  it("a file read without images: its identity is the full load's format and content hash", async () => {
    const path = join(dir, 'plain.jsonl');
    writeFileSync(path, [0, 1, 2].map(vlrb).join('\n') + '\n{"broken": true}\n');
    const loaded = await loadDataset({ path });
    expect(await fileIdentity({ path })).toEqual({ format: 'vl-rewardbench', contentHash: loaded.contentHash });
    expect(await fileIdentity({ path, format: 'mc-jsonl' })).toEqual({ format: 'mc-jsonl', contentHash: loaded.contentHash });
    // Reading images (a folder given): no identity without the full load.
    expect(await fileIdentity({ path, imagesDir: join(dir, 'images') })).toBeUndefined();
    expect(await fileIdentity({ path: join(dir, 'missing.jsonl') })).toBeUndefined();
  });

  it('a re-import returns the first artifact, with its rows and skipped count', async () => {
    const path = join(dir, 'again.jsonl');
    writeFileSync(path, [0, 1, 2, 3].map(vlrb).join('\n') + '\n{"broken": true}\n');
    const first = await importSource(db.db, { name: 'd', path });
    expect(first).toMatchObject({ kind: 'mc-items', rows: 4, skipped: 1 });
    // The same bytes elsewhere: the same dataset.
    const copy = join(dir, 'copy.jsonl');
    writeFileSync(copy, [0, 1, 2, 3].map(vlrb).join('\n') + '\n{"broken": true}\n');
    expect(await importSource(db.db, { name: 'd', path })).toEqual(first);
    expect(await importSource(db.db, { name: 'other', path: copy })).toEqual(first);
  });

  it('a load that read images is another artifact, in either order', async () => {
    for (const imagesFirst of [true, false]) {
      const path = join(dir, `images-${imagesFirst}.jsonl`);
      writeFileSync(path, [0, 1, 2].map(vlrb).join('\n') + `\n${vlrb(imagesFirst ? 10 : 11)}\n`);
      const withImages = async () => importSource(db.db, { name: 'd', path, images: dir });
      const without = async () => importSource(db.db, { name: 'd', path });
      const [a, b] = imagesFirst ? [await withImages(), await without()] : [await without(), await withImages()];
      const [imaged, plain] = imagesFirst ? [a, b] : [b, a];
      expect(imaged.artifactId).not.toBe(plain.artifactId);
      const hashes = async (id: number) =>
        (await db.pool.query<{ n: number }>('select count(image_hash)::int as n from mc_items where artifact_id = $1', [id])).rows[0]!.n;
      // Rows 0-2 have their image in images/; row 10 or 11 has none (skipped when images are read).
      expect([await hashes(imaged.artifactId), imaged.rows, imaged.skipped]).toEqual([3, 3, 1]);
      expect([await hashes(plain.artifactId), plain.rows, plain.skipped]).toEqual([0, 4, 0]);
      // And each is found again as itself.
      expect(await withImages()).toEqual(imaged);
      expect(await without()).toEqual(plain);
    }
  });

  it('a file with URL images (downloaded whatever the options): its identity is not the loaded hash, and a re-import finds the same artifact', async () => {
    const path = join(dir, 'urls.jsonl');
    const rows = [0, 1].map((i) => JSON.stringify({ id: `${nonce}-u${i}`, query: 'q', image: `${base}/img/${i}.png`, candidates: ['1', '2'], best: i }));
    writeFileSync(path, rows.join('\n') + '\n');
    const loaded = await loadDataset({ path });
    const id = await fileIdentity({ path });
    expect(id?.format).toBe('mc-jsonl');
    expect(id?.contentHash).not.toBe(loaded.contentHash);
    const first = await importSource(db.db, { name: 'u', path });
    const art = await db.pool.query<{ content_hash: string }>('select content_hash from artifacts where id = $1', [first.artifactId]);
    expect(art.rows[0]!.content_hash).toBe(loaded.contentHash);
    expect(await importSource(db.db, { name: 'u', path })).toEqual(first);
  });
});
