/**
 * Training-set exports against golden files: a small sft-set and rl-set written straight to
 * Postgres, exported in every format, compared byte for byte with test/distill/golden/ (regenerate
 * with UPDATE_GOLDEN=1 after a deliberate format change), exported twice (byte-identical), checked
 * against each format's own rules, and loaded by Python's `datasets` with the expected columns.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportArtifact } from '../../activities/datasets/export.js';
import { sha256Hex } from '../../activities/inference/cache-key.js';
import { storeImage } from '../../activities/inference/store.js';
import type { DbHandle } from '../../db/client.js';
import { REPO, openTestDb, uniqueName } from '../helpers/env.js';
import { solidPng } from '../helpers/png.js';

const GOLDEN = join(REPO, 'test', 'distill', 'golden');
let db: DbHandle;
let sftId: number;
let rlId: number;
const images: string[] = [];

/** A 2×2 PNG of one colour (level 9: the golden files hold its hash). */
const tinyPng = (r: number, g: number, b: number): Buffer => solidPng(2, [r, g, b], 9);

const PROMPT = (q: string) => `[Question]\n${q}\n\n[Response A]\nred\n\n[Response B]\nblue\n\nWhich response is the best: A or B?`;

beforeAll(async () => {
  db = await openTestDb();
  images.push(await storeImage(db.db, tinyPng(255, 0, 0), 'image/png'), await storeImage(db.db, tinyPng(0, 0, 255), 'image/png'));
  const run = uniqueName('golden');
  const open = async (kind: string, name: string) =>
    (
      await db.pool.query<{ id: number }>(
        "insert into artifacts (kind, name, run_id, stage_id, rows, content_hash, sealed_at) values ($1, $2, $3, 'distill', 3, 'x', now()) returning id",
        [kind, name, run],
      )
    ).rows[0]!.id;
  sftId = await open('sft-set', 'sft');
  rlId = await open('rl-set', 'rl');
  const rows = [
    { key: 'q0', image: images[0]!, question: 'What colour is the shape?', answer: 'A', split: 'train' },
    { key: 'q1', image: images[1]!, question: 'Is the shape blue? "Quotes" and ünïcode.', answer: 'B', split: 'validation' },
    { key: 'q2', image: null, question: 'Which colour is warmer?', answer: 'A', split: 'train' },
  ];
  for (const [idx, r] of rows.entries()) {
    await db.pool.query(
      `insert into sft_rows (artifact_id, idx, item_key, image_hash, prompt, response, answer, split, trace_hash, attempt, source_artifact_id)
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, 0)`,
      [
        sftId,
        idx,
        r.key,
        r.image,
        PROMPT(r.question),
        `<think>Looking at the image, option ${r.answer} fits.\nSecond line.</think><answer>${r.answer}</answer>`,
        r.answer,
        r.split,
        `hash-${r.key}`,
      ],
    );
    await db.pool.query(
      `insert into rl_rows (artifact_id, idx, item_key, image_hash, prompt, question, options, answer, split, source_artifact_id)
       values ($1, $2, $3, $4, $5, $6, '["red","blue"]', $7, $8, 0)`,
      [rlId, idx, r.key, r.image, PROMPT(r.question), r.question, r.answer, r.split],
    );
  }
});
afterAll(async () => {
  await db?.close();
});

const CASES = [
  { format: 'llamafactory', set: 'sft', file: 'sft.json' },
  { format: 'trl', set: 'sft', file: 'sft.jsonl' },
  { format: 'trl', set: 'sft', file: 'sft.parquet' },
  { format: 'trl', set: 'rl', file: 'rl.jsonl' },
  { format: 'trl', set: 'rl', file: 'rl.parquet' },
  { format: 'verl', set: 'rl', file: 'rl.parquet' },
  { format: 'openai', set: 'sft', file: 'sft.jsonl' },
] as const;

function listFiles(dir: string): string[] {
  return readdirSync(dir)
    .flatMap((f) => (statSync(join(dir, f)).isDirectory() ? listFiles(join(dir, f)).map((x) => join(f, x)) : [f]))
    .sort();
}

async function exportCase(c: (typeof CASES)[number], dir: string) {
  const out = join(dir, c.file);
  const res = await exportArtifact(db.db, c.set === 'sft' ? sftId : rlId, { format: c.format, out });
  return { out, res };
}

describe('training-set exports', () => {
  for (const c of CASES) {
    it(`${c.format} ${c.file}: byte-identical to the golden files and to a second export, hash recorded`, async () => {
      const one = mkdtempSync(join(tmpdir(), 'jf-golden-'));
      const two = mkdtempSync(join(tmpdir(), 'jf-golden-'));
      const a = await exportCase(c, one);
      const b = await exportCase(c, two);
      expect(a.res.rows).toBe(3);
      expect(a.res.sha256).toBe(b.res.sha256);
      const files = listFiles(one);
      expect(files).toEqual(listFiles(two));
      for (const f of files) expect(readFileSync(join(one, f)).equals(readFileSync(join(two, f))), f).toBe(true);
      // The sidecar lists every other file with its sha256; its own hash is the export's.
      const listing = readFileSync(`${a.out}.sha256`, 'utf8');
      expect(sha256Hex(Buffer.from(listing))).toBe(a.res.sha256);
      const listed = listing
        .trim()
        .split('\n')
        .map((l) => l.split('  '));
      expect(listed.map(([, f]) => f).sort()).toEqual(files.filter((f) => f !== `${c.file}.sha256`));
      for (const [h, f] of listed) expect(sha256Hex(readFileSync(join(one, f!)))).toBe(h);

      const golden = join(GOLDEN, c.format, c.file.replace('.', '-'));
      if (process.env.UPDATE_GOLDEN === '1') {
        for (const f of files) {
          mkdirSync(dirname(join(golden, f)), { recursive: true });
          writeFileSync(join(golden, f), readFileSync(join(one, f)));
        }
      }
      expect(listFiles(golden)).toEqual(files);
      for (const f of files) expect(readFileSync(join(one, f)).equals(readFileSync(join(golden, f))), `${relative(REPO, join(golden, f))} differs`).toBe(true);
    });
  }

  it("llamafactory follows the format's rules: <image> tags = images, roles alternate user/assistant, dataset_info names the file", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jf-lf-'));
    writeFileSync(join(dir, 'dataset_info.json'), JSON.stringify({ other: { file_name: 'other.json' } }));
    const { out } = await exportCase(CASES[0], dir);
    const records = JSON.parse(readFileSync(out, 'utf8')) as { messages: { role: string; content: string }[]; images: string[] }[];
    expect(records).toHaveLength(3);
    for (const r of records) {
      const tags = r.messages.reduce((n, m) => n + (m.content.match(/<image>/g)?.length ?? 0), 0);
      expect(tags).toBe(r.images.length);
      r.messages.forEach((m, i) => expect(m.role).toBe(i % 2 === 0 ? 'user' : 'assistant'));
      expect(r.messages.length % 2).toBe(0);
      for (const img of r.images) expect(statSync(join(dir, img)).isFile()).toBe(true);
    }
    expect(records.map((r) => r.images.length)).toEqual([1, 1, 0]);
    const info = JSON.parse(readFileSync(join(dir, 'dataset_info.json'), 'utf8')) as Record<
      string,
      { file_name: string; formatting: string; columns: Record<string, string> }
    >;
    expect(info.other).toEqual({ file_name: 'other.json' });
    expect(info.sft).toMatchObject({ file_name: 'sft.json', formatting: 'sharegpt', columns: { messages: 'messages', images: 'images' } });
  });

  it('openai: one chat object per line, images inline as data URLs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jf-oai-'));
    const { out } = await exportCase(CASES[6], dir);
    const lines = readFileSync(out, 'utf8').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(3);
    const first = JSON.parse(lines[0]!) as { messages: { role: string; content: unknown }[] };
    expect(first.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
    const parts = first.messages[0]!.content as { type: string; image_url?: { url: string } }[];
    expect(parts[0]!.image_url!.url).toBe(`data:image/png;base64,${tinyPng(255, 0, 0).toString('base64')}`);
    expect(listFiles(dir)).toEqual(['sft.jsonl', 'sft.jsonl.sha256']);
  });

  it('Python datasets loads the trl and verl files with the expected columns and types', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jf-py-'));
    const outs: Record<string, string> = {};
    for (const c of CASES.filter((x) => x.format !== 'llamafactory' && x.format !== 'openai')) {
      const sub = join(dir, `${c.format}-${c.file.replace('.', '-')}`);
      outs[`${c.format}/${c.file}`] = (await exportCase(c, sub)).out;
    }
    const script = `
import json, sys
import datasets
out = {}
for name, path in json.loads(sys.argv[1]).items():
    kind = 'parquet' if path.endswith('.parquet') else 'json'
    ds = datasets.load_dataset(kind, data_files=path, split='train')
    out[name] = {'rows': ds.num_rows, 'features': ds.features.to_dict(), 'first': ds.data.slice(0, 1).to_pylist()[0]}
print(json.dumps(out, default=lambda b: {'bytes': len(b)}))
`;
    const res = JSON.parse(
      execFileSync('python3', ['-c', script, JSON.stringify(outs)], {
        encoding: 'utf8',
        env: { ...process.env, HF_DATASETS_CACHE: join(dir, 'hf-cache'), HF_HUB_OFFLINE: '1' },
      }),
    ) as Record<string, { rows: number; features: Record<string, unknown>; first: Record<string, unknown> }>;
    const str = { dtype: 'string', _type: 'Value' };
    const image = { feature: { _type: 'Image' }, _type: 'List' };
    const parts = { feature: { type: str, text: str }, _type: 'List' };
    for (const r of Object.values(res)) expect(r.rows).toBe(3);

    expect(res['trl/sft.jsonl']!.features).toEqual({
      messages: { feature: { role: str, content: parts }, _type: 'List' },
      images: { feature: str, _type: 'List' },
    });
    expect(res['trl/sft.jsonl']!.first.images).toEqual([`sft.jsonl.images/${images[0]}.png`]);
    expect(res['trl/rl.jsonl']!.features).toEqual({
      prompt: { feature: { role: str, content: parts }, _type: 'List' },
      images: { feature: str, _type: 'List' },
      answer: str,
    });

    expect(Object.keys(res['trl/sft.parquet']!.features)).toEqual(['messages', 'images']);
    expect(res['trl/sft.parquet']!.features.images).toEqual(image);
    expect(res['trl/sft.parquet']!.features.messages).toEqual({ feature: { role: str, content: parts }, _type: 'List' });
    expect(res['trl/rl.parquet']!.features).toEqual({ prompt: { feature: { role: str, content: parts }, _type: 'List' }, images: image, answer: str });
    const sftFirst = res['trl/sft.parquet']!.first as {
      messages: { role: string; content: { type: string; text: string | null }[] }[];
      images: { bytes: { bytes: number }; path: string }[];
    };
    expect(sftFirst.messages[0]!.content).toEqual([
      { type: 'image', text: null },
      { type: 'text', text: PROMPT('What colour is the shape?') },
    ]);
    expect(sftFirst.images[0]!.bytes.bytes).toBe(tinyPng(255, 0, 0).length);

    const verl = res['verl/rl.parquet']!;
    expect(verl.features).toEqual({
      data_source: str,
      prompt: { feature: { role: str, content: str }, _type: 'List' },
      images: image,
      ability: str,
      reward_model: { style: str, ground_truth: str },
      extra_info: { split: str, index: { dtype: 'int64', _type: 'Value' }, item_key: str },
    });
    expect(verl.first).toMatchObject({
      data_source: 'judgeflow/mc-judge',
      prompt: [{ role: 'user', content: `<image>${PROMPT('What colour is the shape?')}` }],
      ability: 'judge',
      reward_model: { style: 'rule', ground_truth: 'A' },
      extra_info: { split: 'train', index: 0, item_key: 'q0' },
    });
  });

  it("--split writes only that split's rows", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jf-split-'));
    const train = await exportArtifact(db.db, sftId, { format: 'openai', out: join(dir, 'train.jsonl'), split: 'train' });
    const validation = await exportArtifact(db.db, sftId, { format: 'openai', out: join(dir, 'validation.jsonl'), split: 'validation' });
    expect([train.rows, validation.rows]).toEqual([2, 1]);
    expect(readFileSync(join(dir, 'validation.jsonl'), 'utf8')).toContain('ünïcode');
    expect(readFileSync(join(dir, 'train.jsonl'), 'utf8')).not.toContain('ünïcode');
  });

  it("refuses a format that does not write the artifact's kind, naming the ones that do", async () => {
    await expect(exportArtifact(db.db, sftId, { format: 'verl', out: join(tmpdir(), 'x.parquet') })).rejects.toThrow(
      /format verl writes rl-set; artifact \d+ is sft-set \(use --format llamafactory \| trl \| openai\)/,
    );
    await expect(exportArtifact(db.db, rlId, { format: 'trl', out: join(tmpdir(), 'x.csv') })).rejects.toThrow(
      /trl writes JSONL: --out must end in \.jsonl \(or \.parquet\)/,
    );
  });
});
