/**
 * Dataset files → artifacts. `loadSource` reads any format of spec/artifacts.ts DATASET_FORMATS;
 * `importSource` stores it once per content hash as an artifact (rows in `mc_items` or
 * `qa_items`, images once in `blobs`). Stages receive the artifact's id, never the file.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { sql } from 'drizzle-orm';
import type { Db } from '../../db/client.js';
import { artifacts } from '../../db/schema/index.js';
import { DATASET_FORMATS, type ArtifactKind, type DatasetFormat } from '../../spec/artifacts.js';
import type { DatasetRef, StagePlan } from '../../workflows/types.js';
import { storeImage } from '../inference/store.js';
import { DatasetError, fileIdentity, loadDataset, type LoadResult, type McFormat, type RowIssue } from './mc.js';
import { looksLikeMmvet } from './mmvet.js';
import { loadQaDataset, type QaFormat, type QaLoadResult } from './qa.js';

export { DatasetError, type RowIssue };

export type LoadedSource = ({ kind: 'mc-items' } & LoadResult) | ({ kind: 'qa-items' } & QaLoadResult);

/** The format of a file without `format:`: parquet is VL-RewardBench's, JSONL is told by its first record. */
export function inferSourceFormat(path: string): DatasetFormat | undefined {
  if (extname(path).toLowerCase() === '.parquet') return undefined; // mc.ts decides (vl-rewardbench-parquet)
  let head: string;
  try {
    head = readFileSync(path)
      .subarray(0, 1 << 20)
      .toString('utf8');
  } catch {
    return undefined; // the loader reports the unreadable file
  }
  if (looksLikeMmvet(head)) return 'mm-vet';
  const first = /\{[^\n]*/.exec(head)?.[0] ?? '';
  if (/"conversations"\s*:/.test(first)) return 'llava';
  if (/"question"\s*:/.test(first) && /"answer"\s*:/.test(first) && !/"candidates"\s*:/.test(first)) return 'qa-jsonl';
  return undefined;
}

/** Loads a dataset file of any format; rows it cannot use are in `issues`. Throws DatasetError when none is valid. */
/** A dataset as the spec gives it, path resolved. */
export type DatasetSource = Omit<DatasetRef, 'name' | 'path' | 'artifactId'> & { path: string };

export async function loadSource(ref: DatasetSource): Promise<LoadedSource> {
  const format = ref.format ?? inferSourceFormat(ref.path);
  if (format !== undefined && DATASET_FORMATS[format] === 'qa-items') {
    const loaded = await loadQaDataset({
      path: ref.path,
      format: format as QaFormat,
      imagesDir: ref.images,
      limit: ref.limit,
      split: ref.split,
      columns: ref.columns,
    });
    return { kind: 'qa-items', ...loaded };
  }
  const loaded = await loadDataset({ path: ref.path, format: format as McFormat | undefined, imagesDir: ref.images, limit: ref.limit });
  return { kind: 'mc-items', ...loaded };
}

/** Skipped rows counted by reason: the reason without its particulars (URLs, paths, ids, numbers). */
export function skippedByReason(issues: readonly RowIssue[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of issues) {
    const r = i.reason
      // A URL's own colon would otherwise end the reason ("unreadable image http").
      .replace(/\b(?:https?|data):\S*?(?=:?(?:\s|$)|\))/g, '')
      .split(/[:"(]/)[0]!
      .replace(/\s\S*[/\\]\S*/g, '')
      .replace(/\d+/g, 'N')
      .trim();
    out[r] = (out[r] ?? 0) + 1;
  }
  return out;
}

export interface ImportedSource {
  artifactId: number;
  kind: ArtifactKind;
  rows: number;
  skipped: number;
}

const ROW_BATCH = 1000;

/** What an import loads of a plan's dataset: the whole file (no `limit`), path resolved. */
export function importedSource(ref: DatasetRef): DatasetSource {
  if (ref.path === undefined) throw new DatasetError(`dataset "${ref.name}" has no path`, { path: '' });
  const { name: _name, artifactId: _id, path, ...rest } = ref;
  return { ...rest, path, limit: undefined };
}

/**
 * Imports a dataset file into an artifact, once per (kind, format, content hash): a second import
 * of the same content returns the first one's id. Rows and the artifact row are written in one
 * transaction; images go to `blobs` first (content-addressed, so a crash leaves nothing wrong).
 * The whole file is imported: a dataset's `limit` is applied by the stages that read it.
 */
export async function importSource(db: Db, ref: DatasetSource & { name: string }, preloaded?: LoadedSource): Promise<ImportedSource> {
  const find = async (kind: ArtifactKind, format: string, contentHash: string) => {
    const res = await db.$client.query<{ id: number; rows: number; issues: unknown[] }>(
      'select id, rows, issues from artifacts where run_id is null and kind = $1 and format = $2 and content_hash = $3',
      [kind, format, contentHash],
    );
    const r = res.rows[0];
    return r ? { artifactId: r.id, kind, rows: r.rows, skipped: r.issues.length } : undefined;
  };
  // Already imported? A multiple-choice file whose load reads no image is identified by its bytes'
  // hash: found by that, it is not parsed again (what a re-launch of the same spec mostly does).
  // (A load the spec check made has its hash already: looked up by that below.)
  const format = preloaded ? undefined : (ref.format ?? inferSourceFormat(ref.path));
  if (!preloaded && (format === undefined || DATASET_FORMATS[format] === 'mc-items')) {
    const id = await fileIdentity({ path: ref.path, format: format as McFormat | undefined, imagesDir: ref.images });
    const known = id && (await find('mc-items', id.format, id.contentHash));
    if (known) return known;
  }
  // The whole file: `limit` is applied by the stages that read the artifact. A load the spec check
  // already made (importedSource(ref)) is used as is.
  const loaded = preloaded ?? (await loadSource(importedSource(ref)));
  const existing = await find(loaded.kind, loaded.format, loaded.contentHash);
  if (existing) return existing;

  const imageHashes = new Map<Uint8Array, string>();
  for (const item of loaded.items) {
    const img = item.image;
    if (img?.bytes && !imageHashes.has(img.bytes)) imageHashes.set(img.bytes, await storeImage(db, img.bytes, img.mime ?? 'application/octet-stream'));
  }
  const summary = {
    source_rows: loaded.items.length + loaded.issues.length,
    imported: loaded.items.length,
    skipped: loaded.issues.length,
    skipped_by_reason: skippedByReason(loaded.issues),
  };
  await db.transaction(async (tx) => {
    const [row] = await tx
      .insert(artifacts)
      .values({
        kind: loaded.kind,
        name: ref.name,
        source: ref.path,
        format: loaded.format,
        contentHash: loaded.contentHash,
        rows: loaded.items.length,
        summary,
        issues: loaded.issues,
        sealedAt: sql`now()`,
      })
      .onConflictDoNothing()
      .returning({ id: artifacts.id });
    if (!row) return; // imported concurrently
    if (loaded.kind === 'qa-items') {
      for (let i = 0; i < loaded.items.length; i += ROW_BATCH) {
        const batch = loaded.items.slice(i, i + ROW_BATCH);
        await tx.execute(sql`insert into qa_items (artifact_id, idx, item_key, question, answer, image_hash, source_line, meta)
          select ${row.id}, * from unnest(${pgArray(batch.map((_, j) => i + j))}::int[], ${pgArray(batch.map((b) => b.itemKey))}::text[],
            ${pgArray(batch.map((b) => b.question))}::text[], ${pgArray(batch.map((b) => b.answer))}::text[],
            ${pgArray(batch.map((b) => imageHashes.get(b.image.bytes) ?? null))}::text[], ${pgArray(batch.map((b) => b.line))}::int[],
            ${pgArray(batch.map((b) => JSON.stringify(b.meta)))}::jsonb[])`);
      }
    } else {
      for (let i = 0; i < loaded.items.length; i += ROW_BATCH) {
        const batch = loaded.items.slice(i, i + ROW_BATCH);
        await tx.execute(sql`insert into mc_items (artifact_id, idx, source_idx, item_key, query, image_hash, candidates, best, category, subset, meta)
          select ${row.id}, t.idx, t.idx, t.item_key, t.query, t.image_hash, t.candidates, t.best, t.category, t.subset, t.meta
          from unnest(${pgArray(batch.map((_, j) => i + j))}::int[], ${pgArray(batch.map((b) => b.itemKey))}::text[], ${pgArray(batch.map((b) => b.query))}::text[],
            ${pgArray(batch.map((b) => (b.image?.bytes ? imageHashes.get(b.image.bytes)! : null)))}::text[], ${pgArray(batch.map((b) => JSON.stringify(b.candidates)))}::jsonb[],
            ${pgArray(batch.map((b) => b.best))}::int[], ${pgArray(batch.map((b) => b.category))}::text[], ${pgArray(batch.map((b) => b.subset))}::text[],
            ${pgArray(batch.map((b) => JSON.stringify({ ...b.meta, ...(b.image?.path ? { image_path: b.image.path } : {}) })))}::jsonb[])
            as t(idx, item_key, query, image_hash, candidates, best, category, subset, meta)`);
      }
    }
  });
  return (await find(loaded.kind, loaded.format, loaded.contentHash))!;
}

/** A JS array as one bound parameter (drizzle would otherwise expand it into a list). */
function pgArray(values: unknown[]) {
  return sql.param(values);
}

/**
 * Imports every file dataset of a plan (once per content hash) and returns the plan with each
 * dataset's artifact id: the launch does this where the files are, so workers need no access to them.
 */
export async function importPlanDatasets(db: Db, plan: readonly StagePlan[], loaded?: ReadonlyMap<string, LoadedSource>): Promise<StagePlan[]> {
  const ids = new Map<string, number>();
  for (const s of plan) {
    for (const d of Object.values(s.datasets)) {
      if (ids.has(d.name)) continue;
      if (d.path === undefined) throw new DatasetError(`dataset "${d.name}" has neither a path nor an artifact`, { path: '' });
      ids.set(d.name, (await importSource(db, { ...d, path: d.path }, loaded?.get(d.name))).artifactId);
    }
  }
  // The artifact replaces the file: what a stage gets is an id (the path stays in artifacts.source).
  const strip = ({ path: _path, images: _images, ...d }: DatasetRef) => ({ ...d, artifactId: ids.get(d.name)! });
  return plan.map((s) => ({ ...s, datasets: Object.fromEntries(Object.entries(s.datasets).map(([n, d]) => [n, strip(d)])) }));
}
