import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, extname, isAbsolute, join } from 'node:path';
import { formatsOf, type FormatOf } from '../../spec/artifacts.js';

/** A multiple-choice judge item: a query (+ image) and K candidates, one of them the best. */
export interface McItem {
  /** Unique within the dataset (the record's id). */
  itemKey: string;
  query: string;
  /** `path` as written in the record, or resolved when the bytes were read; `bytes` only when read. */
  image?: { path?: string; bytes?: Uint8Array; mime?: string };
  candidates: string[];
  /** 0-based index of the best candidate. */
  best: number;
  category: string;
  subset: string;
  /** The record's other fields (VL-RewardBench: models, judge, human_ranking, ground_truth, …). */
  meta: Record<string, unknown>;
}

/** A skipped row: 1-based line (JSONL) or row (parquet) number and why. */
export interface RowIssue {
  line: number;
  reason: string;
}

/**
 * - `vl-rewardbench`: the official JSONL records (id, image_path, query, response[2], human_ranking, …).
 * - `vl-rewardbench-parquet`: the published parquet (same columns; `image` a `{bytes, path}` struct or raw bytes).
 * - `mc-jsonl`: judgeflow's generic multiple-choice format (see README.md).
 */
export type McFormat = FormatOf<'mc-items'>;

export const MC_FORMATS: readonly McFormat[] = formatsOf('mc-items');

export interface LoadResult {
  items: McItem[];
  issues: RowIssue[];
  format: McFormat;
  /**
   * Identity of the loaded items: sha256 (hex) of the source file's bytes, and, when images were
   * read from files or URLs, of each item's key and image hash too. The same file loaded with
   * other images (or without them) is another dataset.
   */
  contentHash: string;
}

export interface LoadDatasetOptions {
  path: string;
  /** Inferred from the extension (.parquet) or the first record when absent. */
  format?: McFormat;
  /** Directory image paths are relative to. Given: the image bytes are read (an unreadable image skips the row). */
  imagesDir?: string;
  /**
   * Read image files. Default: true when `imagesDir` is given. Without `imagesDir`, paths resolve
   * against the dataset file's directory. Parquet images travel inside the file and are always kept;
   * images given as http(s) URLs are always downloaded (one that cannot be skips its row).
   */
  readImages?: boolean;
  /** Keep only the first `limit` valid items. */
  limit?: number;
}

/** A dataset that cannot be loaded at all (unreadable file, unknown format, no valid row). */
export class DatasetError extends Error {
  override readonly name = 'DatasetError';
  readonly path: string;
  readonly issues: RowIssue[];
  constructor(message: string, opts: { path: string; issues?: RowIssue[]; cause?: unknown }) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.path = opts.path;
    this.issues = opts.issues ?? [];
  }
}

/** The image type named by the file's magic bytes, or undefined. */
export function sniffImageMime(bytes: Uint8Array): 'image/png' | 'image/jpeg' | 'image/gif' | 'image/webp' | undefined {
  const b = bytes;
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 && b[4] === 0x0d && b[5] === 0x0a && b[6] === 0x1a && b[7] === 0x0a) {
    return 'image/png';
  }
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'image/jpeg';
  if (b.length >= 6 && b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x38 && (b[4] === 0x37 || b[4] === 0x39) && b[5] === 0x61) {
    return 'image/gif';
  }
  if (
    b.length >= 12 &&
    b[0] === 0x52 &&
    b[1] === 0x49 &&
    b[2] === 0x46 &&
    b[3] === 0x46 &&
    b[8] === 0x57 &&
    b[9] === 0x45 &&
    b[10] === 0x42 &&
    b[11] === 0x50
  ) {
    return 'image/webp';
  }
  return undefined;
}

/** VL-RewardBench sub-datasets (official scoring script, after its May-2025 fix). */
export type VlrbSubset = 'povid' | 'rlaif-v' | 'rlhf-v' | 'reasoning_tasks' | 'wildvision-battle' | 'vlfeedback';
export type VlrbCategory = 'general' | 'hallucination' | 'reasoning';

/**
 * The sub-dataset of a VL-RewardBench id, from its prefix up to the first `_` or `-` (as the
 * official script splits it): `hallucination` (POVID pairs) → povid, `RLAIF` → rlaif-v, `RLHF` →
 * rlhf-v, `mathverse` / `mmmu` → reasoning_tasks, `wildvision` → wildvision-battle, anything else
 * (LRVInstruction, jailbreak, politics, svit, …) → vlfeedback.
 */
export function vlrbSubset(id: string): VlrbSubset {
  const m = /^[^_-]*/.exec(id);
  const prefix = m ? m[0] : id;
  switch (prefix) {
    case 'hallucination':
    case 'povid':
      return 'povid';
    case 'RLAIF':
      return 'rlaif-v';
    case 'RLHF':
      return 'rlhf-v';
    case 'mathverse':
    case 'mmmu':
      return 'reasoning_tasks';
    case 'wildvision':
      return 'wildvision-battle';
    default:
      return 'vlfeedback';
  }
}

/** The category of a VL-RewardBench sub-dataset: general 183, hallucination 749, reasoning 318 items. */
export function vlrbCategory(subset: VlrbSubset): VlrbCategory {
  switch (subset) {
    case 'povid':
    case 'rlaif-v':
    case 'rlhf-v':
      return 'hallucination';
    case 'reasoning_tasks':
      return 'reasoning';
    case 'wildvision-battle':
    case 'vlfeedback':
      return 'general';
  }
}

/**
 * The `format` and `contentHash` that `loadDataset(opts)` would return, from the file's bytes alone
 * (no parsing), when that load would read no image: its content hash is then the file's sha256,
 * unless a row names a URL image (downloaded whatever the options say), in which case the hash of
 * that load differs from the file's and a look-up by this one finds nothing. Undefined when the
 * load would read image files or the file is unreadable (the full load reports that).
 */
export async function fileIdentity(
  opts: Pick<LoadDatasetOptions, 'path' | 'format' | 'imagesDir' | 'readImages'>,
): Promise<{ format: McFormat; contentHash: string } | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(opts.path);
  } catch {
    return undefined;
  }
  const format = opts.format ?? inferFormat(opts.path, bytes);
  if ((opts.readImages ?? opts.imagesDir !== undefined) && format !== 'vl-rewardbench-parquet') return undefined;
  return { format, contentHash: createHash('sha256').update(bytes).digest('hex') };
}

/** Loads a dataset file into items; bad rows are reported in `issues` and skipped. */
export async function loadDataset(opts: LoadDatasetOptions): Promise<LoadResult> {
  const { path } = opts;
  if (opts.limit !== undefined && (!Number.isInteger(opts.limit) || opts.limit < 1)) {
    throw new DatasetError(`limit must be a positive integer, got ${opts.limit}`, { path });
  }
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new DatasetError(`cannot read dataset file ${path}: ${(err as Error).message}`, { path, cause: err });
  }
  const fileHash = createHash('sha256').update(bytes).digest('hex');
  const format = opts.format ?? inferFormat(path, bytes);

  const readImages = (opts.readImages ?? opts.imagesDir !== undefined) && format !== 'vl-rewardbench-parquet';
  const limit = opts.limit ?? Number.POSITIVE_INFINITY;
  const ctx: RowContext = {
    imageBase: opts.imagesDir ?? dirname(path),
    readImages,
    // A row whose image turns out unreadable is skipped: the limit then applies after reading.
    limit: readImages ? Number.POSITIVE_INFINITY : limit,
  };

  const parse = async (c: RowContext): Promise<ParsedRows> => {
    if (format === 'vl-rewardbench-parquet') return parseParquet(path, bytes, c);
    const vlrb = format === 'vl-rewardbench';
    return parseJsonl(bytes, vlrb ? vlrbFromRecord : mcFromRecord, new ItemKeys(vlrb ? 'vl-rewardbench' : 'unique'), c);
  };
  let parsed = await parse(ctx);
  if (ctx.limit !== Number.POSITIVE_INFINITY && parsed.rows.some((r) => r.imageFile !== undefined)) {
    // URL images are downloaded (whatever readImages says) and one that fails skips its row: the
    // limit must then apply after the downloads, so parse every row.
    parsed = await parse({ ...ctx, limit: Number.POSITIVE_INFINITY });
  }
  let issues = [...parsed.issues];
  const fetched = readImages || parsed.rows.some((r) => r.imageFile !== undefined);
  const items = fetched ? await attachImages(parsed.rows, issues, limit) : parsed.rows.map((r) => r.item);
  if (fetched && items.length === limit) {
    // Report only the rows up to the last item kept, as a load without images does.
    const lastKey = items[items.length - 1]!.itemKey;
    const cutoff = parsed.rows.find((r) => r.item.itemKey === lastKey)!.line;
    issues = issues.filter((i) => i.line <= cutoff);
  }
  issues.sort((a, b) => a.line - b.line);

  if (items.length === 0) {
    const first = issues
      .slice(0, 3)
      .map((i) => `line ${i.line}: ${i.reason}`)
      .join('; ');
    throw new DatasetError(
      `no valid ${format} rows in ${path}` + (issues.length > 0 ? ` (${issues.length} bad rows; ${first}${issues.length > 3 ? '; …' : ''})` : ' (empty file)'),
      { path, issues },
    );
  }
  let contentHash = fileHash;
  if (fetched) {
    const h = createHash('sha256').update(fileHash);
    // Items sharing an image share its bytes (attachImages): each distinct image is hashed once.
    const hashes = new WeakMap<Uint8Array, string>();
    const hashOf = (b: Uint8Array) => {
      let x = hashes.get(b);
      if (x === undefined) hashes.set(b, (x = createHash('sha256').update(b).digest('hex')));
      return x;
    };
    for (const item of items) if (item.image?.bytes) h.update(`\u0000${item.itemKey}\u0000`).update(hashOf(item.image.bytes));
    contentHash = h.digest('hex');
  }
  return { items, issues, format, contentHash };
}

interface RowContext {
  imageBase: string;
  readImages: boolean;
  limit: number;
}

/** A valid row, before its image file (if any) is read. */
interface PendingRow {
  line: number;
  item: McItem;
  /** Path to read the image from. */
  imageFile?: string;
}

interface ParsedRows {
  rows: PendingRow[];
  issues: RowIssue[];
}

class RowError extends Error {
  override readonly name = 'RowError';
}

/**
 * Assigns item keys. `unique` (mc-jsonl): an id may appear once. `vl-rewardbench`: the official
 * scoring script identifies an item by id + query + response set, and the published file reuses
 * 18 reasoning ids for different response pairs; a repeated id with new content becomes
 * `<id>#2`, `<id>#3`, … (in file order), a repeated id with the same content is a duplicate row.
 */
class ItemKeys {
  private readonly byId = new Map<string, Array<{ signature: string; line: number }>>();
  private readonly keys = new Set<string>();
  constructor(private readonly rule: 'unique' | 'vl-rewardbench') {}

  register(item: McItem, line: number): string {
    const id = item.itemKey;
    const prior = this.byId.get(id);
    const signature = this.rule === 'unique' ? '' : [item.query, ...[...item.candidates].sort()].join('\u0000');
    if (prior) {
      const same = prior.find((p) => p.signature === signature);
      if (same) throw new RowError(`duplicate id "${id}" (same as line ${same.line})`);
    }
    let key = id;
    for (let n = (prior?.length ?? 0) + 1; this.keys.has(key); n++) key = `${id}#${n}`;
    this.keys.add(key);
    if (prior) prior.push({ signature, line });
    else this.byId.set(id, [{ signature, line }]);
    return key;
  }
}

type RecordMapper = (rec: Record<string, unknown>, ctx: RowContext) => { item: McItem; imageFile?: string };

function inferFormat(path: string, bytes: Buffer): McFormat {
  const ext = extname(path).toLowerCase();
  const isParquet = bytes.length >= 4 && bytes.subarray(0, 4).toString('latin1') === 'PAR1';
  if (ext === '.parquet' || isParquet) return 'vl-rewardbench-parquet';
  // The first parseable record decides.
  const text = bytes.subarray(0, Math.min(bytes.length, 1 << 20)).toString('utf8');
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      // A bad or truncated first line: look at the next one.
      continue;
    }
    if (isRecord(rec)) {
      if ('candidates' in rec) return 'mc-jsonl';
      if ('response' in rec || 'human_ranking' in rec) return 'vl-rewardbench';
    }
  }
  throw new DatasetError(`cannot infer the format of ${path}: give format (${MC_FORMATS.join(' | ')})`, { path });
}

function parseJsonl(bytes: Buffer, map: RecordMapper, keys: ItemKeys, ctx: RowContext): ParsedRows {
  const rows: PendingRow[] = [];
  const issues: RowIssue[] = [];
  let text = bytes.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const lines = text.split('\n');
  for (let i = 0; i < lines.length && rows.length < ctx.limit; i++) {
    const raw = lines[i]!;
    if (raw.trim() === '') continue;
    const line = i + 1;
    let rec: unknown;
    try {
      rec = JSON.parse(raw);
    } catch (err) {
      issues.push({ line, reason: `invalid JSON: ${(err as Error).message}` });
      continue;
    }
    if (!isRecord(rec)) {
      issues.push({ line, reason: 'not a JSON object' });
      continue;
    }
    try {
      const mapped = map(rec, ctx);
      const item = { ...mapped.item, itemKey: keys.register(mapped.item, line) };
      rows.push(mapped.imageFile === undefined ? { line, item } : { line, item, imageFile: mapped.imageFile });
    } catch (err) {
      if (!(err instanceof RowError)) throw err;
      issues.push({ line, reason: err.message });
    }
  }
  return { rows, issues };
}

// --- VL-RewardBench ---------------------------------------------------------------------------

// `id` stays in meta: it is the source id when the item key had to be disambiguated.
const VLRB_CORE = new Set(['query', 'response', 'image']);

function vlrbFromRecord(rec: Record<string, unknown>, ctx: RowContext): { item: McItem; imageFile?: string } {
  const itemKey = requireId(rec.id);
  const query = requireString(rec.query, 'query');
  const candidates = requireStrings(rec.response, 'response');
  const best = bestFromRanking(rec.human_ranking, candidates.length);
  const subset = vlrbSubset(itemKey);
  const meta: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rec)) if (!VLRB_CORE.has(k)) meta[k] = v;
  const item: McItem = { itemKey, query, candidates, best, category: vlrbCategory(subset), subset, meta };
  const imagePath = rec.image_path;
  if (imagePath !== undefined && imagePath !== null && typeof imagePath !== 'string') throw new RowError('image_path is not a string');
  // Every VL-RewardBench item is about an image: with images requested, a record without one is broken.
  if (ctx.readImages && !imagePath) throw new RowError('missing image_path');
  return withImagePath(item, imagePath ?? undefined, ctx);
}

/** `human_ranking[i]` is the rank of response i (0 = preferred): [0, 1] → best 0, [1, 0] → best 1. */
function bestFromRanking(ranking: unknown, k: number): number {
  if (!Array.isArray(ranking)) throw new RowError('missing human_ranking');
  if (ranking.length !== k) throw new RowError(`human_ranking has ${ranking.length} entries for ${k} responses`);
  const ranks = ranking.map((r) => (typeof r === 'bigint' ? Number(r) : r));
  if (!ranks.every((r) => typeof r === 'number' && Number.isInteger(r) && r >= 0)) {
    throw new RowError(`human_ranking ${JSON.stringify(ranks)} is not a list of non-negative integers`);
  }
  const top = ranks.filter((r) => r === 0).length;
  if (top !== 1) throw new RowError(`human_ranking ${JSON.stringify(ranks)} has ${top} responses ranked 0 (need exactly one)`);
  return ranks.indexOf(0);
}

// --- mc-jsonl --------------------------------------------------------------------------------

function mcFromRecord(rec: Record<string, unknown>, ctx: RowContext): { item: McItem; imageFile?: string } {
  const itemKey = requireId(rec.id);
  const query = requireString(rec.query, 'query');
  const candidates = requireStrings(rec.candidates, 'candidates');
  const best = rec.best;
  if (typeof best !== 'number' || !Number.isInteger(best)) throw new RowError('best is not an integer');
  if (best < 0 || best >= candidates.length) throw new RowError(`best ${best} out of range for ${candidates.length} candidates`);
  const category = optionalString(rec.category, 'category') ?? 'all';
  const subset = optionalString(rec.subset, 'subset') ?? category;
  const meta = rec.meta ?? {};
  if (!isRecord(meta)) throw new RowError('meta is not an object');
  const image = rec.image;
  if (image !== undefined && image !== null && typeof image !== 'string') throw new RowError('image is not a string');
  return withImagePath({ itemKey, query, candidates, best, category, subset, meta }, image ?? undefined, ctx);
}

// --- parquet ---------------------------------------------------------------------------------

const PARQUET_CHUNK = 256;

async function parseParquet(path: string, bytes: Buffer, ctx: RowContext): Promise<ParsedRows> {
  // Loaded on first use: every CLI command imports this module (through the stage kinds).
  const { parquetMetadata, parquetReadObjects } = await import('hyparquet');
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
  const file = (whole ? bytes.buffer : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)) as ArrayBuffer;
  let total: number;
  try {
    total = Number(parquetMetadata(file).num_rows);
  } catch (err) {
    throw new DatasetError(`${path} is not a readable parquet file: ${(err as Error).message}`, { path, cause: err });
  }
  const rows: PendingRow[] = [];
  const issues: RowIssue[] = [];
  const keys = new ItemKeys('vl-rewardbench');
  // Read in chunks so a small `limit` does not decode the whole file.
  for (let start = 0; start < total && rows.length < ctx.limit; start += PARQUET_CHUNK) {
    let records: Record<string, unknown>[];
    try {
      // utf8: false keeps unannotated BYTE_ARRAY columns (image bytes) binary; STRING columns stay strings.
      records = await parquetReadObjects({ file, rowStart: start, rowEnd: Math.min(total, start + PARQUET_CHUNK), utf8: false });
    } catch (err) {
      throw new DatasetError(`cannot decode ${path} (rows ${start + 1}–${start + PARQUET_CHUNK}): ${(err as Error).message}`, { path, cause: err });
    }
    for (let i = 0; i < records.length && rows.length < ctx.limit; i++) {
      const line = start + i + 1;
      try {
        const item = vlrbFromParquetRow(records[i]!);
        rows.push({ line, item: { ...item, itemKey: keys.register(item, line) } });
      } catch (err) {
        if (!(err instanceof RowError)) throw err;
        issues.push({ line, reason: err.message });
      }
    }
  }
  return { rows, issues };
}

const decoder = new TextDecoder('utf-8', { fatal: false });

/** Unannotated byte-array columns arrive as bytes: read them as text where text is expected. */
function asText(v: unknown): unknown {
  if (v instanceof Uint8Array) return decoder.decode(v);
  if (Array.isArray(v)) return v.map(asText);
  return v;
}

function vlrbFromParquetRow(row: Record<string, unknown>): McItem {
  const rec: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) rec[k] = k === 'image' ? v : normalizeParquetValue(asText(v));
  // The HF export stores `meta` as a JSON string; keep it as a string if it is not a JSON object.
  if (typeof rec.meta === 'string') rec.meta = parseJsonObject(rec.meta) ?? rec.meta;
  const { item } = vlrbFromRecord(rec, { imageBase: '', readImages: false, limit: Number.POSITIVE_INFINITY });
  const img = row.image;
  let bytes: Uint8Array | undefined;
  let path: string | undefined = typeof rec.image_path === 'string' ? rec.image_path : undefined;
  if (img instanceof Uint8Array) {
    bytes = img;
  } else if (isRecord(img)) {
    if (img.bytes instanceof Uint8Array) bytes = img.bytes;
    else if (img.bytes !== null && img.bytes !== undefined) throw new RowError('image.bytes is not binary');
    const p = asText(img.path);
    if (typeof p === 'string' && p !== '' && path === undefined) path = p;
  } else if (img !== null && img !== undefined) {
    throw new RowError('image is neither bytes nor a {bytes, path} struct');
  }
  if (bytes !== undefined && bytes.length === 0) throw new RowError('image bytes are empty');
  if (bytes === undefined && path === undefined) return item;
  const image: NonNullable<McItem['image']> = {};
  if (path !== undefined) image.path = path;
  if (bytes !== undefined) {
    image.bytes = bytes;
    const mime = sniffImageMime(bytes) ?? mimeFromExtension(path);
    if (mime !== undefined) image.mime = mime;
  }
  return { ...item, image };
}

/** int64 lists (human_ranking) arrive as bigint; JSON-friendly numbers are what the rest expects. */
function normalizeParquetValue(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(normalizeParquetValue);
  return v;
}

// --- images ----------------------------------------------------------------------------------

const IMAGE_URL = /^https?:\/\//i;

function withImagePath(item: McItem, imagePath: string | undefined, ctx: RowContext): { item: McItem; imageFile?: string } {
  if (imagePath === undefined || imagePath === '') return { item };
  if (IMAGE_URL.test(imagePath)) return { item: { ...item, image: { path: imagePath } }, imageFile: imagePath };
  if (!ctx.readImages) return { item: { ...item, image: { path: imagePath } } };
  const file = isAbsolute(imagePath) ? imagePath : join(ctx.imageBase, imagePath);
  return { item: { ...item, image: { path: file } }, imageFile: file };
}

const IMAGE_READ_BATCH = 32;

/** Reads the rows' image files, in row order, until `limit` items have a readable image. */
async function attachImages(rows: PendingRow[], issues: RowIssue[], limit: number): Promise<McItem[]> {
  const items: McItem[] = [];
  // Rows sharing an image file or URL (several questions about one picture) read or download it
  // once and share its bytes.
  const reads = new Map<string, Promise<ImageRead>>();
  for (let start = 0; start < rows.length && items.length < limit; start += IMAGE_READ_BATCH) {
    const batch = rows.slice(start, start + IMAGE_READ_BATCH);
    const read = await Promise.all(batch.map((row) => withImageBytes(row, reads)));
    for (const r of read) {
      if ('issue' in r) issues.push(r.issue);
      else if (items.length < limit) items.push(r.item);
    }
  }
  return items;
}

const IMAGE_DOWNLOAD_TIMEOUT_MS = 30_000;
const IMAGE_MAX_BYTES = 64 * 1024 * 1024;

/** Downloads an image (two tries: a second chance for a dropped connection or a 5xx). */
export async function downloadImage(url: string): Promise<{ bytes: Buffer; mime?: string }> {
  for (let attempt = 1; ; attempt++) {
    let retryable = true;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(IMAGE_DOWNLOAD_TIMEOUT_MS), redirect: 'follow' });
      if (!res.ok) {
        retryable = res.status >= 500;
        throw new Error(`HTTP ${res.status}`);
      }
      const declared = Number(res.headers.get('content-length') ?? 0);
      if (declared > IMAGE_MAX_BYTES) {
        retryable = false;
        throw new Error(`${declared} bytes, more than ${IMAGE_MAX_BYTES}`);
      }
      const bytes = Buffer.from(await res.arrayBuffer());
      const type = res.headers.get('content-type')?.split(';')[0]?.trim();
      return { bytes, ...(type?.startsWith('image/') ? { mime: type } : {}) };
    } catch (err) {
      if (!retryable || attempt >= 2) throw err;
    }
  }
}

type ImageRead = { data: Uint8Array; declaredMime?: string } | { error: NodeJS.ErrnoException };

async function readImage(file: string): Promise<ImageRead> {
  try {
    const { bytes, mime } = IMAGE_URL.test(file) ? await downloadImage(file) : { bytes: await readFile(file), mime: undefined };
    return { data: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), ...(mime ? { declaredMime: mime } : {}) };
  } catch (err) {
    return { error: err as NodeJS.ErrnoException };
  }
}

async function withImageBytes(row: PendingRow, reads: Map<string, Promise<ImageRead>>): Promise<{ item: McItem } | { issue: RowIssue }> {
  if (row.imageFile === undefined) return { item: row.item };
  let read = reads.get(row.imageFile);
  if (!read) {
    read = readImage(row.imageFile);
    reads.set(row.imageFile, read);
  }
  const r = await read;
  if ('error' in r) {
    const e = r.error;
    const reason = e.name === 'TimeoutError' ? `no answer in ${IMAGE_DOWNLOAD_TIMEOUT_MS / 1000} s` : (e.code ?? e.message);
    return { issue: { line: row.line, reason: `unreadable image ${row.imageFile}: ${reason}` } };
  }
  const data = r.data;
  if (data.length === 0) return { issue: { line: row.line, reason: `empty image ${row.imageFile}` } };
  const mime = sniffImageMime(data) ?? r.declaredMime ?? mimeFromExtension(IMAGE_URL.test(row.imageFile) ? new URL(row.imageFile).pathname : row.imageFile);
  return { item: { ...row.item, image: { path: row.imageFile, bytes: data, ...(mime ? { mime } : {}) } } };
}

export function mimeFromExtension(path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  switch (extname(path).toLowerCase()) {
    case '.png':
      return 'image/png';
    case '.jpg':
    case '.jpeg':
      return 'image/jpeg';
    case '.gif':
      return 'image/gif';
    case '.webp':
      return 'image/webp';
    default:
      return undefined;
  }
}

// --- field checks ----------------------------------------------------------------------------

function parseJsonObject(text: string): Record<string, unknown> | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  return isRecord(v) ? v : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function requireId(v: unknown): string {
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v !== 'string' || v === '') throw new RowError('missing id');
  return v;
}

function requireString(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new RowError(`missing ${field}`);
  return v;
}

function optionalString(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new RowError(`${field} is not a string`);
  return v;
}

function requireStrings(v: unknown, field: string): string[] {
  if (!Array.isArray(v)) throw new RowError(`missing ${field}`);
  if (v.length < 2) throw new RowError(`${field} has ${v.length} entries, need at least 2`);
  if (!v.every((x): x is string => typeof x === 'string')) throw new RowError(`${field} has a non-string entry`);
  return v;
}
