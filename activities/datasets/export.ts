/**
 * Writes an artifact to a file. `mc-jsonl` (mc-items): one `{id, query, image, candidates, best,
 * category, subset, meta}` per line, the generic format `evaluate` reads back; `qa-jsonl`
 * (qa-items): `{id, image, question, answer, meta}`. Images are written once per content hash
 * beside the file (`<file>.images/<sha256>.<ext>`), referenced by relative path. `meta.lineage`
 * names the artifact, the source item and, per candidate, the request that wrote it.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Db } from '../../db/client.js';
import { TRAINING_FORMATS, TrainingExportError, exportTrainingSet, type TrainingFormat } from '../distill/export.js';
import { loadBlobs } from '../inference/store.js';

export const EXPORT_FORMATS = { 'mc-jsonl': 'mc-items', 'qa-jsonl': 'qa-items' } as const;
export type ExportFormat = keyof typeof EXPORT_FORMATS;

export class ExportError extends Error {
  override readonly name = 'ExportError';
}

const EXT: Record<string, string> = { 'image/png': 'png', 'image/jpeg': 'jpg', 'image/gif': 'gif', 'image/webp': 'webp' };
const PAGE = 2000;

export async function exportArtifact(
  db: Db,
  artifactId: number,
  opts: { format: ExportFormat | TrainingFormat; out: string; split?: 'train' | 'validation' },
): Promise<{ rows: number; images: number; sha256?: string }> {
  if (opts.format in TRAINING_FORMATS) {
    try {
      return await exportTrainingSet(db, artifactId, { format: opts.format as TrainingFormat, out: opts.out, ...(opts.split ? { split: opts.split } : {}) });
    } catch (err) {
      if (err instanceof TrainingExportError) throw new ExportError(err.message, { cause: err });
      throw err;
    }
  }
  const format = opts.format as ExportFormat;
  const art = (
    await db.$client.query<{ kind: string; sealed: boolean }>('select kind, sealed_at is not null as sealed from artifacts where id = $1', [artifactId])
  ).rows[0];
  if (!art) throw new ExportError(`no artifact ${artifactId}`);
  if (!art.sealed) throw new ExportError(`artifact ${artifactId} is not sealed yet (its stage has not finished)`);
  if (EXPORT_FORMATS[format] !== art.kind) {
    const fits = Object.entries(EXPORT_FORMATS)
      .filter(([, k]) => k === art.kind)
      .map(([f]) => f);
    throw new ExportError(
      `format ${format} writes ${EXPORT_FORMATS[format]}; artifact ${artifactId} is ${art.kind}${fits.length ? ` (use --format ${fits.join(' | ')})` : ' (no export format yet)'}`,
    );
  }
  await mkdir(dirname(opts.out), { recursive: true });
  const imagesDir = `${opts.out}.images`;
  const written = new Set<string>();
  const out = createWriteStream(opts.out);
  let rows = 0;
  const writeImages = async (hashes: (string | null)[]) => {
    const wanted = [...new Set(hashes.filter((h): h is string => !!h && !written.has(h)))];
    if (wanted.length === 0) return new Map<string, string>();
    await mkdir(imagesDir, { recursive: true });
    const blobs = await loadBlobs(db, wanted);
    for (const [hash, b] of blobs) {
      await writeFile(join(imagesDir, `${hash}.${EXT[b.mime] ?? 'bin'}`), b.bytes);
      written.add(hash);
    }
    return new Map([...blobs].map(([h, b]) => [h, `${basename(imagesDir)}/${h}.${EXT[b.mime] ?? 'bin'}`]));
  };
  const paths = new Map<string, string>();
  try {
    for (let from = 0; ; from += PAGE) {
      const page =
        art.kind === 'mc-items'
          ? await db.$client.query(
              `select item_key, query, image_hash, candidates, best, category, subset, meta, source_item_key, candidate_requests
               from mc_items where artifact_id = $1 and idx >= $2 and idx < $3 order by idx`,
              [artifactId, from, from + PAGE],
            )
          : await db.$client.query(
              'select item_key, question, answer, image_hash, meta, source_line from qa_items where artifact_id = $1 and idx >= $2 and idx < $3 order by idx',
              [artifactId, from, from + PAGE],
            );
      if (page.rows.length === 0) break;
      for (const [h, p] of await writeImages(page.rows.map((r) => r.image_hash as string | null))) paths.set(h, p);
      let chunk = '';
      for (const r of page.rows) {
        const image = r.image_hash ? paths.get(r.image_hash) : undefined;
        const line =
          art.kind === 'mc-items'
            ? {
                id: r.item_key,
                query: r.query,
                ...(image ? { image } : {}),
                candidates: r.candidates,
                best: r.best,
                category: r.category,
                subset: r.subset,
                meta: { ...r.meta, lineage: { artifact_id: artifactId, source_item_key: r.source_item_key, candidate_requests: r.candidate_requests } },
              }
            : {
                id: r.item_key,
                ...(image ? { image } : {}),
                question: r.question,
                answer: r.answer,
                meta: { ...r.meta, lineage: { artifact_id: artifactId, source_line: r.source_line } },
              };
        chunk += `${JSON.stringify(line)}\n`;
        rows++;
      }
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
  } finally {
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }
  return { rows, images: written.size };
}
