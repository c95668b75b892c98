import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSource, skippedByReason } from '../../../activities/datasets/index.js';
import { DatasetError } from '../../../activities/datasets/mc.js';
import { loadQaDataset, locateEasyVqa } from '../../../activities/datasets/qa.js';

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);
const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46]);
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jf-qa-'));
  await mkdir(join(dir, 'img'));
  await writeFile(join(dir, 'img', 'a.png'), PNG);
  await writeFile(join(dir, 'img', 'b.jpg'), JPEG);
  await writeFile(join(dir, 'img', 'big.png'), Buffer.concat([PNG, Buffer.alloc(2048)]));
  await writeFile(join(dir, 'img', 'text.png'), 'hello');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('qa-jsonl', () => {
  it('keeps valid rows and skips bad ones with line and reason', async () => {
    const lines = [
      { id: 1, image: 'img/a.png', question: 'What shape?', answer: 'A circle.' },
      { id: 2, image: 'img/b.jpg', question: 'What colour?', answer: 'Blue.', meta: { source: 'x' } },
      { id: 3, image: `data:image/png;base64,${PNG.toString('base64')}`, question: 'Inline?', answer: 'Yes.' },
      { id: 4, image: 'img/none.png', question: 'Q', answer: 'A' },
      { id: 5, image: 'img/text.png', question: 'Q', answer: 'A' },
      { id: 6, image: 'img/a.png', question: '', answer: 'A' },
      { id: 7, image: 'img/a.png', question: 'Q' },
      { id: 8, question: 'Q', answer: 'A' },
      { id: 1, image: 'img/a.png', question: 'Other?', answer: 'Other.' },
      { id: 2, image: 'img/b.jpg', question: 'What colour?', answer: 'Blue.' },
      { id: 9, image: 'img/big.png', question: 'Big?', answer: 'Yes.' },
    ].map((l) => JSON.stringify(l));
    lines.splice(3, 0, '{not json');
    await writeFile(join(dir, 'qa.jsonl'), lines.join('\n'));
    const res = await loadQaDataset({ path: join(dir, 'qa.jsonl'), format: 'qa-jsonl', maxImageBytes: 1024 });
    expect(res.items.map((i) => [i.itemKey, i.line, i.image.mime])).toEqual([
      ['1', 1, 'image/png'],
      ['2', 2, 'image/jpeg'],
      ['3', 3, 'image/png'],
    ]);
    expect(res.items[1]!.meta).toEqual({ source: 'x' });
    expect(res.issues.map((i) => i.line)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(res.issues.map((i) => i.reason)).toEqual([
      expect.stringMatching(/^invalid JSON/),
      expect.stringMatching(/^unreadable image .*none\.png: ENOENT/),
      expect.stringMatching(/^not an image/),
      'empty question',
      'missing answer',
      'missing image',
      expect.stringMatching(/^duplicate id "1" with different content \(first at line 1\)/),
      'duplicate of line 2',
      expect.stringMatching(/over the cap of 1024/),
    ]);
    expect(skippedByReason(res.issues)).toEqual({
      'invalid JSON': 1,
      'unreadable image': 1,
      'not an image': 1,
      'empty question': 1,
      'missing answer': 1,
      'missing image': 1,
      'duplicate id': 1,
      'duplicate of line N': 1,
      'image too large': 1,
    });
    // The same content is the same artifact; a changed answer is another.
    const again = await loadQaDataset({ path: join(dir, 'qa.jsonl'), format: 'qa-jsonl', maxImageBytes: 1024 });
    expect(again.contentHash).toBe(res.contentHash);
  });

  it('resolves image paths against images: when given, else against the file', async () => {
    await mkdir(join(dir, 'sub'), { recursive: true });
    const path = join(dir, 'sub', 'qa.jsonl');
    await writeFile(path, `${JSON.stringify({ id: 'x', image: 'img/a.png', question: 'Which?', answer: 'This.' })}\n`);
    const withImages = await loadSource({ path, format: 'qa-jsonl', images: dir });
    if (withImages.kind !== 'qa-items') throw new Error('unreachable');
    expect(withImages.items.map((i) => [i.itemKey, Buffer.from(i.image.bytes).equals(PNG)])).toEqual([['x', true]]);
    // Without images: the path is taken relative to sub/, where no img/ folder is: no valid row.
    await expect(loadSource({ path, format: 'qa-jsonl' })).rejects.toThrow(/no valid qa-jsonl rows .*line 1: unreadable image .*sub[/\\]img[/\\]a\.png/);
  });

  it('counts skipped rows by reason without their URLs, paths and numbers', () => {
    const issues = [
      { line: 1, reason: 'unreadable image https://example.org/a/b.png: HTTP 404' },
      { line: 2, reason: 'unreadable image http://127.0.0.1:8080/x.png: fetch failed' },
      { line: 3, reason: 'unreadable image /data/img/none.png: ENOENT' },
      { line: 4, reason: 'not an image (data:image/png;base64,AAAA)' },
    ];
    expect(skippedByReason(issues)).toEqual({ 'unreadable image': 3, 'not an image': 1 });
  });

  it('a file with no valid row is a DatasetError; the format is inferred from the first record', async () => {
    await writeFile(join(dir, 'bad.jsonl'), `${JSON.stringify({ id: 1, image: 'img/none.png', question: 'Q', answer: 'A' })}\n`);
    await expect(loadSource({ path: join(dir, 'bad.jsonl') })).rejects.toThrow(DatasetError);
    await expect(loadSource({ path: join(dir, 'bad.jsonl') })).rejects.toThrow(/no valid qa-jsonl rows .*line 1: unreadable image/);
  });
});

describe('llava conversations', () => {
  const records = [
    {
      id: 'c1',
      image: 'img/a.png',
      conversations: [
        { from: 'human', value: '<image>\nWhat is this?' },
        { from: 'gpt', value: 'A circle.' },
        { from: 'human', value: 'More?' },
        { from: 'gpt', value: 'No.' },
      ],
    },
    { id: 'c2', image: 'img/b.jpg', conversations: [{ from: 'gpt', value: 'Hi' }] },
    {
      id: 'c3',
      image: 'img/b.jpg',
      conversations: [
        { from: 'human', value: 'Colour? <image>' },
        { from: 'gpt', value: 'Blue.' },
      ],
    },
  ];
  it('reads a JSON array and JSONL alike: first human turn, first gpt turn after it', async () => {
    await writeFile(join(dir, 'llava.json'), JSON.stringify(records));
    await writeFile(join(dir, 'llava.jsonl'), records.map((r) => JSON.stringify(r)).join('\n'));
    for (const file of ['llava.json', 'llava.jsonl']) {
      const res = await loadSource({ path: join(dir, file) });
      expect(res.kind).toBe('qa-items');
      expect(res.format).toBe('llava');
      if (res.kind !== 'qa-items') throw new Error('unreachable');
      expect(res.items.map((i) => [i.itemKey, i.question, i.answer])).toEqual([
        ['c1', 'What is this?', 'A circle.'],
        ['c3', 'Colour?', 'Blue.'],
      ]);
      expect(res.issues).toEqual([{ line: 2, reason: 'no human turn in conversations' }]);
    }
  });
});

describe('hf-parquet', () => {
  it('reads {bytes, path} image structs and list answers, with row-numbered issues', async () => {
    const buf = parquetWriteBuffer({
      columnData: [
        { name: 'query', data: ['How many bars?', 'Which is larger?', 'Empty answer?'] },
        { name: 'label', data: [['4'], ['the red one'], ['']] },
        {
          name: 'image',
          data: [
            { bytes: PNG, path: 'c1.png' },
            { bytes: JPEG, path: 'c2.jpg' },
            { bytes: PNG, path: 'c3.png' },
          ],
        },
      ],
      schema: [
        { name: 'root', num_children: 3 },
        { name: 'query', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
        { name: 'label', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
        { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
        { name: 'element', repetition_type: 'OPTIONAL', type: 'BYTE_ARRAY', converted_type: 'UTF8' },
        { name: 'image', repetition_type: 'OPTIONAL', num_children: 2 },
        { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
        { name: 'path', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
      ],
    });
    await writeFile(join(dir, 'chartqa.parquet'), Buffer.from(buf));
    const res = await loadQaDataset({ path: join(dir, 'chartqa.parquet'), format: 'hf-parquet' });
    expect(res.items.map((i) => [i.itemKey, i.question, i.answer, i.image.mime, i.image.path])).toEqual([
      ['row-1', 'How many bars?', '4', 'image/png', 'c1.png'],
      ['row-2', 'Which is larger?', 'the red one', 'image/jpeg', 'c2.jpg'],
    ]);
    expect(res.issues).toEqual([{ line: 3, reason: 'empty answer' }]);
    await expect(loadQaDataset({ path: join(dir, 'chartqa.parquet'), format: 'hf-parquet', columns: { question: 'prompt' } })).rejects.toThrow(
      /no question column "prompt" among query, label, image/,
    );
  });
});

describe('easy-vqa (the PyPI package)', () => {
  it('reads the installed data folder: [question, answer, image_id] rows, 64×64 PNGs', async () => {
    const res = await loadQaDataset({ path: locateEasyVqa(), format: 'easy-vqa', split: 'test', limit: 50 });
    expect(res.items).toHaveLength(50);
    expect(res.items[0]).toMatchObject({ itemKey: 'test-0', line: 1, meta: { split: 'test', image_id: 0 }, image: { mime: 'image/png' } });
    const answers = new Set(['circle', 'green', 'red', 'gray', 'yes', 'teal', 'black', 'rectangle', 'yellow', 'triangle', 'brown', 'blue', 'no']);
    for (const it of res.items) expect(answers.has(it.answer)).toBe(true);
    expect(res.issues).toEqual([]);
  });
});
