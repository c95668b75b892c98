/**
 * Loaders of question/answer sets with images (the SFT source sets `synthesize` reads):
 * - `qa-jsonl`: `{id, image, question, answer, meta?}` per line; `image` a path (relative to
 *   `images:` or the file's folder), an http(s) URL or a data URL;
 * - `llava`: LLaVA-style `{id, image, conversations: [{from: human|gpt, value}]}` records, as a
 *   JSON array or JSONL; the first human turn is the question (its `<image>` token removed), the
 *   first gpt turn after it the reference answer;
 * - `hf-parquet`: Hugging Face datasets parquet with an image struct `{bytes, path}` (ChartQA,
 *   ScienceQA, AI2D…); columns by name (`columns:`) or the common ones;
 * - `easy-vqa`: the PyPI package's data folder, `<split>/questions.json` rows
 *   `[question, answer, image_id]` and `<split>/images/<image_id>.png`.
 * Bad rows are skipped with their 1-based line (record, row) and reason.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { DatasetError, downloadImage, mimeFromExtension, sniffImageMime, type RowIssue } from './mc.js';
import type { FormatOf } from '../../spec/artifacts.js';
import { mmvetRows } from './mmvet.js';

export type QaFormat = FormatOf<'qa-items'>;

/** A question about an image with its reference answer. */
export interface QaItem {
  itemKey: string;
  question: string;
  answer: string;
  image: { path: string; bytes: Uint8Array; mime: string };
  /** 1-based line (JSONL), record (JSON array) or row (parquet, questions.json) in the source. */
  line: number;
  meta: Record<string, unknown>;
}

export interface QaLoadResult {
  items: QaItem[];
  issues: RowIssue[];
  format: QaFormat;
  /** sha256 over the format and every item (key, question, answer, image hash), in order. */
  contentHash: string;
}

export interface LoadQaOptions {
  /** The file; for easy-vqa the package's data folder (default: located with python3). */
  path?: string;
  format: QaFormat;
  /** Folder image paths resolve against (default: the file's folder). */
  imagesDir?: string;
  limit?: number;
  /** easy-vqa split: `train` or `test` (default). */
  split?: string;
  /** hf-parquet column names. */
  columns?: { id?: string; image?: string; question?: string; answer?: string };
  /** Images larger than this skip their row. Default 16 MiB. */
  maxImageBytes?: number;
}

const DEFAULT_MAX_IMAGE_BYTES = 16 * 1024 * 1024;

/** The installed easy-vqa package's data folder (`pip install easy-vqa==1.0`). */
export function locateEasyVqa(): string {
  try {
    const dir = execFileSync('python3', ['-c', 'import easy_vqa, os; print(os.path.dirname(easy_vqa.__file__))'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
    return join(dir, 'data');
  } catch (err) {
    throw new DatasetError('easy-vqa is not installed for python3: run `python3 -m pip install easy-vqa==1.0`, or give the data folder as path', {
      path: 'easy-vqa',
      cause: err,
    });
  }
}

/** A row before its image is read. */
export interface RawRow {
  line: number;
  id: string;
  question: unknown;
  answer: unknown;
  image: { file: string } | { url: string } | { bytes: Uint8Array; path: string } | undefined;
  meta: Record<string, unknown>;
}

class QaRowError extends Error {
  override readonly name = 'QaRowError';
}

export async function loadQaDataset(opts: LoadQaOptions): Promise<QaLoadResult> {
  const path = opts.format === 'easy-vqa' ? (opts.path ?? locateEasyVqa()) : opts.path;
  if (path === undefined) throw new DatasetError(`${opts.format} needs a path`, { path: '' });
  if (opts.limit !== undefined && (!Number.isInteger(opts.limit) || opts.limit < 1))
    throw new DatasetError(`limit must be a positive integer, got ${opts.limit}`, { path });
  const issues: RowIssue[] = [];
  let rows: RawRow[];
  let imageBase: string;
  switch (opts.format) {
    case 'easy-vqa': {
      const split = opts.split ?? 'test';
      const dir = join(path, split);
      imageBase = join(dir, 'images');
      rows = easyVqaRows(await readSource(join(dir, 'questions.json')), split, issues);
      break;
    }
    case 'qa-jsonl':
      imageBase = opts.imagesDir ?? dirname(path);
      rows = jsonRecords(await readSource(path), issues).flatMap(({ line, rec }) => mapRow(line, issues, () => qaJsonlRow(line, rec)));
      break;
    case 'llava':
      imageBase = opts.imagesDir ?? dirname(path);
      rows = jsonRecords(await readSource(path), issues).flatMap(({ line, rec }) => mapRow(line, issues, () => llavaRow(line, rec)));
      break;
    case 'mm-vet':
      imageBase = opts.imagesDir ?? join(dirname(path), 'images');
      rows = mmvetRows(await readSource(path), path, issues);
      break;
    case 'hf-parquet':
      imageBase = opts.imagesDir ?? dirname(path);
      rows = await parquetRows(path, await readSource(path), opts.columns ?? {}, issues);
      break;
  }
  const items = await finishRows(
    rows,
    { imageBase, limit: opts.limit ?? Number.POSITIVE_INFINITY, maxImageBytes: opts.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES },
    issues,
  );
  if (items.length > 0 && items.length === opts.limit) {
    const cutoff = items[items.length - 1]!.line;
    for (let i = issues.length - 1; i >= 0; i--) if (issues[i]!.line > cutoff) issues.splice(i, 1);
  }
  issues.sort((a, b) => a.line - b.line);
  if (items.length === 0) {
    const first = issues
      .slice(0, 3)
      .map((i) => `line ${i.line}: ${i.reason}`)
      .join('; ');
    throw new DatasetError(
      `no valid ${opts.format} rows in ${path}` + (issues.length > 0 ? ` (${issues.length} bad rows; ${first}${issues.length > 3 ? '; …' : ''})` : ' (empty)'),
      { path, issues },
    );
  }
  const h = createHash('sha256').update(`judgeflow/qa-items\u0000${opts.format}`);
  for (const it of items) h.update(`\u0001${it.itemKey}\u0000${it.question}\u0000${it.answer}\u0000${sha256(it.image.bytes)}`);
  return { items, issues, format: opts.format, contentHash: h.digest('hex') };
}

async function readSource(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new DatasetError(`cannot read dataset file ${path}: ${(err as Error).message}`, { path, cause: err });
  }
}

function mapRow(line: number, issues: RowIssue[], fn: () => RawRow): RawRow[] {
  try {
    return [fn()];
  } catch (err) {
    if (!(err instanceof QaRowError)) throw err;
    issues.push({ line, reason: err.message });
    return [];
  }
}

/** JSON array (records numbered from 1) or JSONL (lines numbered from 1). */
function jsonRecords(bytes: Buffer, issues: RowIssue[]): { line: number; rec: Record<string, unknown> }[] {
  let text = bytes.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const out: { line: number; rec: Record<string, unknown> }[] = [];
  const push = (line: number, v: unknown) => {
    if (isRecord(v)) out.push({ line, rec: v });
    else issues.push({ line, reason: 'not a JSON object' });
  };
  if (text.trimStart().startsWith('[')) {
    let all: unknown;
    try {
      all = JSON.parse(text);
    } catch (err) {
      issues.push({ line: 1, reason: `invalid JSON: ${(err as Error).message}` });
      return out;
    }
    (all as unknown[]).forEach((v, i) => push(i + 1, v));
    return out;
  }
  text.split('\n').forEach((raw, i) => {
    if (raw.trim() === '') return;
    try {
      push(i + 1, JSON.parse(raw));
    } catch (err) {
      issues.push({ line: i + 1, reason: `invalid JSON: ${(err as Error).message}` });
    }
  });
  return out;
}

function idOf(v: unknown, line: number): string {
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'string' && v !== '') return v;
  if (v === undefined || v === null) return `row-${line}`;
  throw new QaRowError('id is neither a string nor a number');
}

function imageSpec(v: unknown): RawRow['image'] {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new QaRowError('image is not a string');
  if (/^data:/i.test(v)) {
    const m = /^data:([^;,]*)(;base64)?,(.*)$/is.exec(v);
    if (!m || !m[2]) throw new QaRowError('image data URL is not base64');
    return { bytes: new Uint8Array(Buffer.from(m[3]!, 'base64')), path: `data:${m[1] ?? ''}` };
  }
  if (/^https?:\/\//i.test(v)) return { url: v };
  return { file: v };
}

function qaJsonlRow(line: number, rec: Record<string, unknown>): RawRow {
  const meta = rec.meta ?? {};
  if (!isRecord(meta)) throw new QaRowError('meta is not an object');
  return { line, id: idOf(rec.id, line), question: rec.question, answer: rec.answer, image: imageSpec(rec.image), meta };
}

function llavaRow(line: number, rec: Record<string, unknown>): RawRow {
  const turns = rec.conversations;
  if (!Array.isArray(turns)) throw new QaRowError('missing conversations');
  const from = (t: unknown) => (isRecord(t) && typeof t.from === 'string' ? t.from.toLowerCase() : '');
  const h = turns.findIndex((t) => from(t) === 'human' || from(t) === 'user');
  if (h < 0) throw new QaRowError('no human turn in conversations');
  const g = turns.findIndex((t, i) => i > h && (from(t) === 'gpt' || from(t) === 'assistant'));
  if (g < 0) throw new QaRowError('no gpt turn after the first human turn');
  const value = (t: unknown) => (isRecord(t) && typeof t.value === 'string' ? t.value : undefined);
  const question = value(turns[h])
    ?.replace(/<image>\s*/g, '')
    .trim();
  const meta: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rec)) if (k !== 'conversations' && k !== 'image' && k !== 'id') meta[k] = v;
  return { line, id: idOf(rec.id, line), question, answer: value(turns[g]), image: imageSpec(rec.image), meta };
}

function easyVqaRows(bytes: Buffer, split: string, issues: RowIssue[]): RawRow[] {
  let all: unknown;
  try {
    all = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new DatasetError(`easy-vqa questions.json is not JSON: ${(err as Error).message}`, { path: 'questions.json', cause: err });
  }
  if (!Array.isArray(all)) throw new DatasetError('easy-vqa questions.json is not a list', { path: 'questions.json' });
  return all.flatMap((r, i) =>
    mapRow(i + 1, issues, () => {
      if (!Array.isArray(r) || r.length < 3) throw new QaRowError('not a [question, answer, image_id] row');
      const [question, answer, imageId] = r as unknown[];
      if (typeof imageId !== 'number' && typeof imageId !== 'string') throw new QaRowError('image_id is neither a number nor a string');
      return { line: i + 1, id: `${split}-${i}`, question, answer, image: { file: `${String(imageId)}.png` }, meta: { split, image_id: imageId } };
    }),
  );
}

const PARQUET_CHUNK = 512;
const decoder = new TextDecoder('utf-8', { fatal: false });

function pickColumn(names: readonly string[], wanted: string | undefined, defaults: readonly string[]): string | undefined {
  if (wanted !== undefined) return names.includes(wanted) ? wanted : undefined;
  return defaults.find((d) => names.includes(d));
}

async function parquetRows(path: string, bytes: Buffer, columns: NonNullable<LoadQaOptions['columns']>, issues: RowIssue[]): Promise<RawRow[]> {
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  let total: number;
  let names: string[];
  try {
    const meta = parquetMetadata(file);
    total = Number(meta.num_rows);
    names = topLevelColumns(meta.schema);
  } catch (err) {
    throw new DatasetError(`${path} is not a readable parquet file: ${(err as Error).message}`, { path, cause: err });
  }
  const col = {
    id: pickColumn(names, columns.id, ['id', 'question_id', 'qid', 'sample_id']),
    image: pickColumn(names, columns.image, ['image', 'images', 'img']),
    question: pickColumn(names, columns.question, ['question', 'query', 'prompt', 'problem']),
    answer: pickColumn(names, columns.answer, ['answer', 'label', 'answers', 'solution']),
  };
  for (const field of ['image', 'question', 'answer'] as const) {
    if (col[field] === undefined) {
      throw new DatasetError(
        `${path}: no ${field} column${columns[field] ? ` "${columns[field]}"` : ''} among ${names.join(', ')}; name it with columns.${field}`,
        { path },
      );
    }
  }
  const rows: RawRow[] = [];
  for (let start = 0; start < total; start += PARQUET_CHUNK) {
    let records: Record<string, unknown>[];
    try {
      records = await parquetReadObjects({ file, rowStart: start, rowEnd: Math.min(total, start + PARQUET_CHUNK), utf8: false });
    } catch (err) {
      throw new DatasetError(`cannot decode ${path} (rows ${start + 1}–${start + PARQUET_CHUNK}): ${(err as Error).message}`, { path, cause: err });
    }
    records.forEach((rec, i) => {
      const line = start + i + 1;
      rows.push(
        ...mapRow(line, issues, () => {
          const text = (v: unknown): unknown => (v instanceof Uint8Array ? decoder.decode(v) : typeof v === 'bigint' ? Number(v) : v);
          let answer = text(rec[col.answer!]);
          if (Array.isArray(answer)) answer = text(answer[0]);
          if (typeof answer === 'number') answer = String(answer);
          const img = rec[col.image!];
          let image: RawRow['image'];
          if (img instanceof Uint8Array) image = { bytes: img, path: `${path}#${line}` };
          else if (isRecord(img)) {
            const p = text(img.path);
            if (img.bytes instanceof Uint8Array && img.bytes.length > 0) image = { bytes: img.bytes, path: typeof p === 'string' && p ? p : `${path}#${line}` };
            else if (typeof p === 'string' && p) image = imageSpec(p);
          } else if (typeof text(img) === 'string') image = imageSpec(text(img));
          const meta: Record<string, unknown> = {};
          for (const [k, v] of Object.entries(rec)) {
            if (k === col.image || k === col.question || k === col.answer || k === col.id) continue;
            const t = text(v);
            if (typeof t === 'string' || typeof t === 'number' || typeof t === 'boolean') meta[k] = t;
          }
          return { line, id: idOf(col.id ? text(rec[col.id]) : undefined, line), question: text(rec[col.question!]), answer, image, meta };
        }),
      );
    });
  }
  return rows;
}

/** The root's children in a flattened parquet schema (nested fields skipped). */
function topLevelColumns(schema: readonly { name: string; num_children?: number }[]): string[] {
  const names: string[] = [];
  let i = 1;
  const skip = (): void => {
    const n = schema[i++]?.num_children ?? 0;
    for (let c = 0; c < n; c++) skip();
  };
  while (i < schema.length) {
    names.push(schema[i]!.name);
    skip();
  }
  return names;
}

const IMAGE_BATCH = 32;

/** Checks fields and ids, reads images (each distinct file once), keeps the first `limit` valid rows. */
async function finishRows(rows: RawRow[], ctx: { imageBase: string; limit: number; maxImageBytes: number }, issues: RowIssue[]): Promise<QaItem[]> {
  const seen = new Map<string, { line: number; signature: string }>();
  const valid: RawRow[] = [];
  for (const r of rows) {
    const q = typeof r.question === 'string' ? r.question.trim() : '';
    const a = typeof r.answer === 'string' ? r.answer.trim() : '';
    if (q === '') issues.push({ line: r.line, reason: r.question === undefined || r.question === null ? 'missing question' : 'empty question' });
    else if (a === '') issues.push({ line: r.line, reason: r.answer === undefined || r.answer === null ? 'missing answer' : 'empty answer' });
    else if (r.image === undefined) issues.push({ line: r.line, reason: 'missing image' });
    else {
      const signature = `${q}\u0000${a}\u0000${JSON.stringify('bytes' in r.image ? sha256(r.image.bytes) : r.image)}`;
      const prior = seen.get(r.id);
      if (prior) {
        issues.push({
          line: r.line,
          reason:
            prior.signature === signature ? `duplicate of line ${prior.line}` : `duplicate id "${r.id}" with different content (first at line ${prior.line})`,
        });
        continue;
      }
      seen.set(r.id, { line: r.line, signature });
      valid.push({ ...r, question: q, answer: a });
    }
  }
  const reads = new Map<string, Promise<{ bytes: Uint8Array; mime?: string } | { reason: string }>>();
  const readImage = (file: string, url: boolean) => {
    let p = reads.get(file);
    if (!p) {
      p = (async () => {
        try {
          const got = url ? await downloadImage(file) : { bytes: await readFile(file) };
          return {
            bytes: new Uint8Array(got.bytes.buffer, got.bytes.byteOffset, got.bytes.byteLength),
            ...('mime' in got && got.mime ? { mime: got.mime } : {}),
          };
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          return { reason: `unreadable image ${file}: ${e.code ?? e.message}` };
        }
      })();
      reads.set(file, p);
    }
    return p;
  };
  const items: QaItem[] = [];
  for (let start = 0; start < valid.length && items.length < ctx.limit; start += IMAGE_BATCH) {
    const batch = valid.slice(start, start + IMAGE_BATCH);
    const got = await Promise.all(
      batch.map(async (r) => {
        const img = r.image!;
        if ('bytes' in img) return { bytes: img.bytes, path: img.path };
        const file = 'url' in img ? img.url : isAbsolute(img.file) ? img.file : join(ctx.imageBase, img.file);
        const res = await readImage(file, 'url' in img);
        return 'reason' in res ? res : { ...res, path: file };
      }),
    );
    batch.forEach((r, i) => {
      const g = got[i]!;
      if ('reason' in g) return void issues.push({ line: r.line, reason: g.reason });
      if (g.bytes.length === 0) return void issues.push({ line: r.line, reason: `empty image ${g.path}` });
      if (g.bytes.length > ctx.maxImageBytes)
        return void issues.push({ line: r.line, reason: `image too large: ${g.path} has ${g.bytes.length} bytes, over the cap of ${ctx.maxImageBytes}` });
      const mime = sniffImageMime(g.bytes);
      if (mime === undefined)
        return void issues.push({
          line: r.line,
          reason: `not an image: ${g.path}${mimeFromExtension(g.path) ? ' (its bytes are no PNG, JPEG, GIF or WebP)' : ''}`,
        });
      if (items.length < ctx.limit)
        items.push({
          itemKey: r.id,
          question: r.question as string,
          answer: r.answer as string,
          image: { path: g.path, bytes: g.bytes, mime },
          line: r.line,
          meta: r.meta,
        });
    });
  }
  return items;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
