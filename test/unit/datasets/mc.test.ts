import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetError, loadDataset, sniffImageMime, vlrbCategory, vlrbSubset, type McItem } from '../../../activities/datasets/mc.js';

const REAL = fileURLToPath(new URL('../../../data/vl-rewardbench/data.jsonl', import.meta.url));

// Smallest valid-looking headers of each image type (enough for sniffing).
const PNG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
const JPEG = Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46]);
const GIF = new TextEncoder().encode('GIF89a\x01\x00');
const WEBP = Uint8Array.from([0x52, 0x49, 0x46, 0x46, 4, 0, 0, 0, 0x57, 0x45, 0x42, 0x50, 0x56, 0x50]);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jf-evaluate-datasets-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function countBy(items: McItem[], key: (i: McItem) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const it of items) out[key(it)] = (out[key(it)] ?? 0) + 1;
  return out;
}

function vlrbRecord(id: string, ranking: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { id, image_path: `images/x/${id}.png`, query: `q ${id}`, response: [`first ${id}`, `second ${id}`], human_ranking: ranking, ...extra };
}

describe('VL-RewardBench category mapping', () => {
  it('maps id prefixes to the official sub-datasets and categories', () => {
    const cases: Array<[string, string, string]> = [
      ['hallucination_pair-1003', 'povid', 'hallucination'],
      ['RLAIF-V-14', 'rlaif-v', 'hallucination'],
      ['RLHF-V-31', 'rlhf-v', 'hallucination'],
      ['mathverse_1294', 'reasoning_tasks', 'reasoning'],
      ['mmmu_pro_test_Electronics_6', 'reasoning_tasks', 'reasoning'],
      ['wildvision-battle-13', 'wildvision-battle', 'general'],
      ['LRVInstruction-000000007746', 'vlfeedback', 'general'],
      ['jailbreak-typo-HateSpeech-70', 'vlfeedback', 'general'],
      ['politics-Gov_Decision-124', 'vlfeedback', 'general'],
      ['svit-complex_reasoning-876', 'vlfeedback', 'general'],
      // The official split is case-sensitive: only the exact prefixes count.
      ['rlaif-V-1', 'vlfeedback', 'general'],
    ];
    for (const [id, subset, category] of cases) {
      expect(vlrbSubset(id), id).toBe(subset);
      expect(vlrbCategory(vlrbSubset(id)), id).toBe(category);
    }
  });
});

describe('loadDataset on the real VL-RewardBench file', () => {
  it('loads 1,250 items with the official category counts and the first-response trap', async () => {
    const t0 = performance.now();
    const r = await loadDataset({ path: REAL });
    const ms = performance.now() - t0;
    console.log(`[evaluate] loaded ${r.items.length} VL-RewardBench records in ${ms.toFixed(1)} ms`);

    expect(r.format).toBe('vl-rewardbench');
    expect(r.issues).toEqual([]);
    expect(r.items).toHaveLength(1250);
    expect(countBy(r.items, (i) => i.category)).toEqual({ general: 183, hallucination: 749, reasoning: 318 });
    expect(countBy(r.items, (i) => i.subset)).toEqual({
      povid: 448,
      'rlaif-v': 233,
      'rlhf-v': 68,
      reasoning_tasks: 318,
      'wildvision-battle': 173,
      vlfeedback: 10,
    });
    expect(r.items.filter((i) => i.best === 0)).toHaveLength(1245);
    expect(r.contentHash).toBe(
      createHash('sha256')
        .update(await readFile(REAL))
        .digest('hex'),
    );
    expect(new Set(r.items.map((i) => i.itemKey)).size).toBe(1250);
  });

  it('keeps the 18 reused reasoning ids as distinct items, keyed <id>#2', async () => {
    const r = await loadDataset({ path: REAL });
    const suffixed = r.items.filter((i) => i.itemKey.includes('#'));
    expect(suffixed).toHaveLength(18);
    for (const it of suffixed) {
      const id = it.itemKey.slice(0, it.itemKey.indexOf('#'));
      expect(it.itemKey).toBe(`${id}#2`);
      expect(it.meta.id).toBe(id);
      expect(it.category).toBe('reasoning');
      const first = r.items.find((x) => x.itemKey === id)!;
      expect(first.query).toBe(it.query);
      expect(first.candidates).not.toEqual(it.candidates);
    }
  });

  it('keeps the record: image path, responses in order, other fields in meta', async () => {
    const r = await loadDataset({ path: REAL, limit: 2 });
    expect(r.items).toHaveLength(2);
    const [a, b] = r.items as [McItem, McItem];
    expect(a.itemKey).toBe('LRVInstruction-000000007746');
    expect(a.best).toBe(1); // human_ranking [1, 0]: the second response is preferred
    expect(a.image).toEqual({ path: 'images/vlfeedback/LRVInstruction-000000007746.jpg' });
    expect(a.candidates[1]).toBe("There is no existence of the dog's ear shape in the image description.");
    expect(a.meta.models).toEqual(['VisualGLM-6b', 'Qwen-VL-Chat']);
    expect(a.meta.human_ranking).toEqual([1, 0]);
    expect(b.itemKey).toBe('RLAIF-V-14');
    expect(b.best).toBe(0);
  });
});

describe('loadDataset: bad rows', () => {
  it('reports bad VL-RewardBench rows with 1-based line numbers and skips them', async () => {
    const lines = [
      JSON.stringify(vlrbRecord('RLAIF-V-1', [0, 1])), // 1 ok
      '{"id": "RLAIF-V-2", "query": ', // 2 invalid JSON
      JSON.stringify({ id: 'RLAIF-V-3', query: 'q', human_ranking: [0, 1] }), // 3 no responses
      JSON.stringify(vlrbRecord('RLAIF-V-4', [0, 1, 2])), // 4 ranking of the wrong length
      '', // 5 blank: ignored, not an issue
      JSON.stringify(vlrbRecord('RLAIF-V-1', [0, 1])), // 6 duplicate of line 1
      JSON.stringify(vlrbRecord('RLHF-V-7', [1, 0])), // 7 ok, second preferred
      JSON.stringify({ ...vlrbRecord('RLHF-V-8', [0]), response: ['only one'] }), // 8 one response
      JSON.stringify(vlrbRecord('RLHF-V-9', [0, 0])), // 9 no unique best
      '[1, 2]', // 10 not an object
      JSON.stringify({ ...vlrbRecord('mmmu_10', [0, 1]), response: ['a', 7] }), // 11 non-string response
    ];
    const path = join(dir, 'bad.jsonl');
    await writeFile(path, lines.join('\n') + '\n');
    const r = await loadDataset({ path, format: 'vl-rewardbench' });
    expect(r.items.map((i) => [i.itemKey, i.best])).toEqual([
      ['RLAIF-V-1', 0],
      ['RLHF-V-7', 1],
    ]);
    expect(r.issues.map((i) => i.line)).toEqual([2, 3, 4, 6, 8, 9, 10, 11]);
    const reason = (line: number) => r.issues.find((i) => i.line === line)!.reason;
    expect(reason(2)).toMatch(/invalid JSON/);
    expect(reason(3)).toMatch(/missing response/);
    expect(reason(4)).toMatch(/human_ranking has 3 entries for 2 responses/);
    expect(reason(6)).toMatch(/duplicate id "RLAIF-V-1" \(same as line 1\)/);
    expect(reason(8)).toMatch(/response has 1 entries/);
    expect(reason(9)).toMatch(/exactly one/);
    expect(reason(10)).toMatch(/not a JSON object/);
    expect(reason(11)).toMatch(/non-string/);
  });

  it('throws DatasetError naming the file and the first issues when no row is valid', async () => {
    const path = join(dir, 'nothing-valid.jsonl');
    await writeFile(path, ['{oops', JSON.stringify(vlrbRecord('RLAIF-V-1', [0, 1, 1]))].join('\n'));
    const err = await loadDataset({ path, format: 'vl-rewardbench' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DatasetError);
    const de = err as DatasetError;
    expect(de.name).toBe('DatasetError');
    expect(de.path).toBe(path);
    expect(de.message).toContain(path);
    expect(de.message).toMatch(/line 1: invalid JSON/);
    expect(de.message).toMatch(/line 2: human_ranking has 3 entries/);
    expect(de.issues).toHaveLength(2);
  });

  it('throws DatasetError for a missing file, an empty file and an unknown format', async () => {
    await expect(loadDataset({ path: join(dir, 'absent.jsonl') })).rejects.toMatchObject({ name: 'DatasetError' });
    const empty = join(dir, 'empty.jsonl');
    await writeFile(empty, '\n\n');
    await expect(loadDataset({ path: empty, format: 'mc-jsonl' })).rejects.toThrow(/empty file/);
    const odd = join(dir, 'odd.jsonl');
    await writeFile(odd, '{"hello": 1}\n');
    await expect(loadDataset({ path: odd })).rejects.toThrow(/cannot infer the format/);
  });
});

describe('loadDataset: mc-jsonl', () => {
  it('loads K-way items, reads images relative to imagesDir, reports bad rows', async () => {
    const sub = join(dir, 'mc');
    await mkdir(join(sub, 'img'), { recursive: true });
    await writeFile(join(sub, 'img', 'a.png'), PNG);
    await writeFile(join(sub, 'img', 'b.bin'), JPEG);
    const rows = [
      { id: 'x1', query: 'what?', image: 'img/a.png', candidates: ['a', 'b', 'c'], best: 2, category: 'chart', subset: 'chartqa', meta: { src: 1 } }, // 1
      { id: 'x2', query: 'q', candidates: ['a', 'b', 'c'], best: 3 }, // 2 best out of range
      { id: 'x1', query: 'again', candidates: ['a', 'b'], best: 0 }, // 3 duplicate id
      { id: 'x4', query: 'q', candidates: ['a'], best: 0 }, // 4 one candidate
      { id: 'x5', query: 'q', image: 'img/missing.png', candidates: ['a', 'b'], best: 1 }, // 5 unreadable image
      { id: 'x6', query: 'text only', candidates: ['a', 'b', 'c', 'd'], best: 1 }, // 6 ok, no image
      { id: 'x7', query: 'q', image: 'img/b.bin', candidates: ['a', 'b'], best: 1.5 }, // 7 best not an integer
      { id: 'x8', query: 'q', image: 'img/b.bin', candidates: ['a', 'b'], best: 0 }, // 8 ok, jpeg sniffed
    ];
    const path = join(sub, 'items.jsonl');
    await writeFile(path, rows.map((r) => JSON.stringify(r)).join('\n'));

    const r = await loadDataset({ path, imagesDir: sub });
    expect(r.format).toBe('mc-jsonl');
    expect(r.items.map((i) => i.itemKey)).toEqual(['x1', 'x6', 'x8']);
    expect(r.issues.map((i) => i.line)).toEqual([2, 3, 4, 5, 7]);
    expect(r.issues.find((i) => i.line === 5)!.reason).toMatch(/unreadable image .*missing\.png: ENOENT/);
    const [x1, x6, x8] = r.items as [McItem, McItem, McItem];
    expect(x1).toMatchObject({ best: 2, category: 'chart', subset: 'chartqa', meta: { src: 1 } });
    expect(x1.image?.mime).toBe('image/png');
    expect(x1.image?.path).toBe(join(sub, 'img', 'a.png'));
    expect(Array.from(x1.image?.bytes ?? [])).toEqual(Array.from(PNG));
    expect(x6).toMatchObject({ category: 'all', subset: 'all', candidates: ['a', 'b', 'c', 'd'] });
    expect(x6.image).toBeUndefined();
    expect(x8.image?.mime).toBe('image/jpeg');
  });

  it('without imagesDir keeps image paths as written and reads nothing; limit counts valid items', async () => {
    const path = join(dir, 'mc-paths.jsonl');
    const rows = [
      { id: 'a', query: 'q', image: 'nowhere/a.png', candidates: ['1', '2'], best: 0 },
      { id: 'b', query: 'q', candidates: ['1'], best: 0 },
      { id: 'c', query: 'q', image: 'nowhere/c.png', candidates: ['1', '2'], best: 1 },
      { id: 'd', query: 'q', candidates: ['1', '2'], best: 1 },
    ];
    await writeFile(path, rows.map((r) => JSON.stringify(r)).join('\n'));
    const r = await loadDataset({ path, limit: 2 });
    expect(r.items.map((i) => [i.itemKey, i.image])).toEqual([
      ['a', { path: 'nowhere/a.png' }],
      ['c', { path: 'nowhere/c.png' }],
    ]);
    expect(r.issues.map((i) => i.line)).toEqual([2]);
  });

  it('reads images relative to the file when asked to without imagesDir; limit skips unreadable images', async () => {
    const sub = join(dir, 'mc-rel');
    await mkdir(sub, { recursive: true });
    await writeFile(join(sub, 'ok.gif'), GIF);
    const rows = [
      { id: 'a', query: 'q', image: 'gone.png', candidates: ['1', '2'], best: 0 },
      { id: 'b', query: 'q', image: 'ok.gif', candidates: ['1', '2'], best: 1 },
      { id: 'c', query: 'q', image: 'ok.gif', candidates: ['1', '2'], best: 1 },
      { id: 'd', query: 'q', image: 'gone.png', candidates: ['1', '2'], best: 1 },
    ];
    const path = join(sub, 'items.jsonl');
    await writeFile(path, rows.map((r) => JSON.stringify(r)).join('\n'));
    const r = await loadDataset({ path, readImages: true, limit: 1 });
    expect(r.items.map((i) => i.itemKey)).toEqual(['b']);
    expect(r.items[0]!.image?.mime).toBe('image/gif');
    expect(r.issues.map((i) => i.line)).toEqual([1]);
  });

  it('downloads http(s) image URLs (no imagesDir needed); a failed download skips its row; limit applies after', async () => {
    const served = new Map<string, { status: number; body?: Uint8Array; type?: string }>([
      ['/img/a.png', { status: 200, body: PNG, type: 'image/png' }],
      ['/img/b', { status: 200, body: JPEG, type: 'application/octet-stream' }],
      ['/img/missing.png', { status: 404 }],
    ]);
    let hits = 0;
    const server = http.createServer((req, res) => {
      hits++;
      const s = served.get(req.url ?? '') ?? { status: 404 };
      res.writeHead(s.status, s.type ? { 'content-type': s.type } : {});
      res.end(s.body ? Buffer.from(s.body) : undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const rows = [
        { id: 'a', query: 'q', image: `${base}/img/a.png`, candidates: ['1', '2'], best: 0 },
        { id: 'gone', query: 'q', image: `${base}/img/missing.png`, candidates: ['1', '2'], best: 0 },
        { id: 'b', query: 'q', image: `${base}/img/b`, candidates: ['1', '2'], best: 1 },
        { id: 'c', query: 'q', image: `${base}/img/a.png`, candidates: ['1', '2'], best: 1 },
      ];
      const path = join(dir, 'mc-urls.jsonl');
      await writeFile(path, rows.map((r) => JSON.stringify(r)).join('\n'));
      const r = await loadDataset({ path, limit: 2 });
      expect(r.items.map((i) => [i.itemKey, i.image?.mime, Buffer.from(i.image!.bytes!).equals(Buffer.from(i.itemKey === 'a' ? PNG : JPEG))])).toEqual([
        ['a', 'image/png', true],
        ['b', 'image/jpeg', true],
      ]);
      expect(r.issues).toEqual([{ line: 2, reason: `unreadable image ${base}/img/missing.png: HTTP 404` }]);
      expect(hits).toBeGreaterThanOrEqual(3);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('rows sharing an image read it once: one download per URL, one buffer for a file; the hash is that of reading each', async () => {
    const hits = new Map<string, number>();
    const server = http.createServer((req, res) => {
      hits.set(req.url ?? '', (hits.get(req.url ?? '') ?? 0) + 1);
      res.writeHead(200, { 'content-type': 'image/png' });
      res.end(Buffer.from(PNG));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const sub = join(dir, 'mc-shared');
      await mkdir(sub, { recursive: true });
      await writeFile(join(sub, 'pic.png'), PNG);
      const rows = Array.from({ length: 6 }, (_, i) => ({
        id: `q${i}`,
        query: `question ${i}`,
        image: i % 2 === 0 ? 'pic.png' : `${base}/one.png`,
        candidates: ['1', '2'],
        best: i % 2,
      }));
      const path = join(sub, 'items.jsonl');
      await writeFile(path, rows.map((r) => JSON.stringify(r)).join('\n'));
      const r = await loadDataset({ path, imagesDir: sub });
      expect(r.items).toHaveLength(6);
      expect(Object.fromEntries(hits)).toEqual({ '/one.png': 1 });
      const files = r.items.filter((i) => i.image?.path === join(sub, 'pic.png'));
      expect(files).toHaveLength(3);
      expect(new Set(files.map((i) => i.image!.bytes)).size).toBe(1);
      // The identity is unchanged: the file's hash, then each item's key and its image's hash.
      const h = createHash('sha256').update(
        createHash('sha256')
          .update(await readFile(path))
          .digest('hex'),
      );
      for (const it of r.items) h.update(`\u0000${it.itemKey}\u0000`).update(createHash('sha256').update(PNG).digest('hex'));
      expect(r.contentHash).toBe(h.digest('hex'));
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('the content hash covers the images read: same file, other images (or none), another dataset', async () => {
    const sub = join(dir, 'mc-hash');
    await mkdir(join(sub, 'v1'), { recursive: true });
    await mkdir(join(sub, 'v2'), { recursive: true });
    await writeFile(join(sub, 'v1', 'a.png'), PNG);
    await writeFile(join(sub, 'v2', 'a.png'), Uint8Array.from([...PNG, 1]));
    const path = join(sub, 'items.jsonl');
    await writeFile(path, JSON.stringify({ id: 'a', query: 'q', image: 'a.png', candidates: ['1', '2'], best: 0 }));
    const none = await loadDataset({ path });
    const v1 = await loadDataset({ path, imagesDir: join(sub, 'v1') });
    const v1again = await loadDataset({ path, imagesDir: join(sub, 'v1') });
    const v2 = await loadDataset({ path, imagesDir: join(sub, 'v2') });
    expect(none.contentHash).toBe(
      createHash('sha256')
        .update(await readFile(path))
        .digest('hex'),
    );
    expect(v1.contentHash).toBe(v1again.contentHash);
    expect(new Set([none.contentHash, v1.contentHash, v2.contentHash]).size).toBe(3);
  });

  it('VL-RewardBench with imagesDir reads images and skips records whose image is unreadable', async () => {
    const sub = join(dir, 'vlrb-img');
    await mkdir(join(sub, 'images', 'x'), { recursive: true });
    await writeFile(join(sub, 'images', 'x', 'RLAIF-V-1.png'), PNG);
    const path = join(dir, 'vlrb-img.jsonl');
    await writeFile(path, [vlrbRecord('RLAIF-V-1', [0, 1]), vlrbRecord('RLAIF-V-2', [1, 0])].map((r) => JSON.stringify(r)).join('\n'));
    const r = await loadDataset({ path, imagesDir: sub });
    expect(r.items.map((i) => i.itemKey)).toEqual(['RLAIF-V-1']);
    expect(r.items[0]!.image).toMatchObject({ path: join(sub, 'images/x/RLAIF-V-1.png'), mime: 'image/png' });
    expect(r.issues).toHaveLength(1);
    expect(r.issues[0]).toMatchObject({ line: 2 });
    expect(r.issues[0]!.reason).toMatch(/unreadable image/);
  });
});

describe('loadDataset: VL-RewardBench parquet', () => {
  const schemaHead = (n: number) => [{ name: 'root', num_children: n }];
  const str = (name: string) => ({ name, type: 'BYTE_ARRAY' as const, converted_type: 'UTF8' as const, repetition_type: 'OPTIONAL' as const });
  const list = (name: string, element: Record<string, unknown>) => [
    { name, repetition_type: 'OPTIONAL' as const, converted_type: 'LIST' as const, num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED' as const, num_children: 1 },
    { name: 'element', repetition_type: 'OPTIONAL' as const, ...element },
  ];

  it('reads the HF layout ({bytes, path} image struct, int64 rankings, JSON meta) with row-numbered issues', async () => {
    const ids = ['RLAIF-V-1', 'mathverse_2', 'wildvision-battle-3', 'hallucination_pair-4', 'RLAIF-V-1'];
    const buf = parquetWriteBuffer({
      columnData: [
        { name: 'id', data: ids },
        { name: 'query', data: ids.map((i) => `query ${i}`) },
        {
          name: 'response',
          data: [
            ['a1', 'b1'],
            ['a2', 'b2'],
            ['a3', 'b3'],
            ['a4', 'b4'],
            ['a1', 'b1'],
          ],
        },
        {
          name: 'image',
          data: [
            { bytes: PNG, path: 'RLAIF-V-1.png' },
            { bytes: JPEG, path: 'mathverse_2.jpg' },
            { bytes: WEBP, path: 'w3.webp' },
            { bytes: PNG, path: 'h4.png' },
            { bytes: PNG, path: 'RLAIF-V-1.png' },
          ],
        },
        {
          name: 'human_ranking',
          data: [
            [0n, 1n],
            [1n, 0n],
            [0n, 1n, 2n],
            [0n, 1n],
            [0n, 1n],
          ],
        },
        { name: 'meta', data: ids.map((_, i) => JSON.stringify({ n: i })) },
      ],
      schema: [
        ...schemaHead(6),
        str('id'),
        str('query'),
        ...list('response', { type: 'BYTE_ARRAY', converted_type: 'UTF8' }),
        { name: 'image', repetition_type: 'OPTIONAL', num_children: 2 },
        { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
        str('path'),
        ...list('human_ranking', { type: 'INT64' }),
        str('meta'),
      ],
    });
    const path = join(dir, 'vlrb.parquet');
    await writeFile(path, new Uint8Array(buf));

    const r = await loadDataset({ path });
    expect(r.format).toBe('vl-rewardbench-parquet');
    expect(r.contentHash).toBe(createHash('sha256').update(new Uint8Array(buf)).digest('hex'));
    expect(r.items.map((i) => [i.itemKey, i.best, i.category, i.subset])).toEqual([
      ['RLAIF-V-1', 0, 'hallucination', 'rlaif-v'],
      ['mathverse_2', 1, 'reasoning', 'reasoning_tasks'],
      ['hallucination_pair-4', 0, 'hallucination', 'povid'],
    ]);
    expect(r.issues).toEqual([
      { line: 3, reason: 'human_ranking has 3 entries for 2 responses' },
      { line: 5, reason: 'duplicate id "RLAIF-V-1" (same as line 1)' },
    ]);
    const [a, b] = r.items as [McItem, McItem];
    expect(a.candidates).toEqual(['a1', 'b1']);
    expect(a.query).toBe('query RLAIF-V-1');
    expect(a.image?.path).toBe('RLAIF-V-1.png');
    expect(a.image?.mime).toBe('image/png');
    expect(Array.from(a.image!.bytes!)).toEqual(Array.from(PNG));
    expect(b.image?.mime).toBe('image/jpeg');
    expect(Array.from(b.image!.bytes!)).toEqual(Array.from(JPEG));
    expect(b.meta.meta).toEqual({ n: 1 });
    expect(b.meta.human_ranking).toEqual([1, 0]);
  });

  it('reads raw binary image columns next to image_path, and honours limit', async () => {
    const buf = parquetWriteBuffer({
      columnData: [
        { name: 'id', data: ['RLHF-V-1', 'RLHF-V-2', 'svit-3'] },
        { name: 'image_path', data: ['images/rlhf-v/RLHF-V-1.png', 'images/rlhf-v/RLHF-V-2.gif', 'images/vlfeedback/svit-3.png'] },
        { name: 'query', data: ['q1', 'q2', 'q3'] },
        {
          name: 'response',
          data: [
            ['x', 'y'],
            ['x', 'y'],
            ['x', 'y'],
          ],
        },
        {
          name: 'human_ranking',
          data: [
            [0n, 1n],
            [0n, 1n],
            [1n, 0n],
          ],
        },
        { name: 'image', data: [PNG, GIF, PNG] },
      ],
      schema: [
        ...schemaHead(6),
        str('id'),
        str('image_path'),
        str('query'),
        ...list('response', { type: 'BYTE_ARRAY', converted_type: 'UTF8' }),
        ...list('human_ranking', { type: 'INT64' }),
        { name: 'image', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
      ],
    });
    const path = join(dir, 'raw-image.data');
    await writeFile(path, new Uint8Array(buf));
    // No .parquet extension: the PAR1 magic identifies the format.
    const r = await loadDataset({ path, limit: 2 });
    expect(r.format).toBe('vl-rewardbench-parquet');
    expect(r.items.map((i) => [i.itemKey, i.image?.path, i.image?.mime])).toEqual([
      ['RLHF-V-1', 'images/rlhf-v/RLHF-V-1.png', 'image/png'],
      ['RLHF-V-2', 'images/rlhf-v/RLHF-V-2.gif', 'image/gif'],
    ]);
  });
});

describe('sniffImageMime', () => {
  it('names png, jpeg, gif and webp from magic bytes, nothing else', () => {
    expect(sniffImageMime(PNG)).toBe('image/png');
    expect(sniffImageMime(JPEG)).toBe('image/jpeg');
    expect(sniffImageMime(GIF)).toBe('image/gif');
    expect(sniffImageMime(WEBP)).toBe('image/webp');
    expect(sniffImageMime(new TextEncoder().encode('BM6\x00\x00\x00'))).toBeUndefined();
    expect(sniffImageMime(new Uint8Array())).toBeUndefined();
  });
});
