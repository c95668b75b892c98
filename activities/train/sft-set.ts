/**
 * The seam to `distill`: an sft-set artifact written as TRL conversational JSONL, one
 * `{ "messages": [{ "role", "content": [{ "type": "text", "text" } | { "type": "image" }] }],
 * "images": [<path>, …] }` per line (image paths relative to the file, or absolute). The trainer
 * reads exactly this. A stage-produced sft-set (distill's) is written by distill's own `trl` export
 * (the rows of its `train` split: `validation` rows are held out), each row with the caption distill
 * read in place of its image (`captions`: a text model trains on it instead of the image); an sft-set imported from a file
 * (`format: trl-jsonl`) is copied with its image paths made absolute.
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Db } from '../../db/client.js';
import { TrainingExportError, exportTrainingSet } from '../distill/export.js';

export type SftSetExporter = (db: Db, artifactId: number, out: string) => Promise<{ rows: number }>;

export class SftSetError extends Error {
  override readonly name = 'SftSetError';
}

export const exportSftSet: SftSetExporter = async (db, artifactId, out) => {
  const art = (
    await db.$client.query<{ kind: string; source: string | null; format: string | null; sealed: boolean }>(
      'select kind, source, format, sealed_at is not null as sealed from artifacts where id = $1',
      [artifactId],
    )
  ).rows[0];
  if (!art) throw new SftSetError(`no artifact ${artifactId}`);
  if (art.kind !== 'sft-set') throw new SftSetError(`artifact ${artifactId} is ${art.kind}; train reads an sft-set`);
  if (!art.sealed) throw new SftSetError(`sft-set ${artifactId} is not sealed (its stage has not finished)`);
  await mkdir(dirname(out), { recursive: true });
  if (art.source !== null && art.format === 'trl-jsonl') {
    const lines = (await readFile(art.source, 'utf8')).split('\n').filter((l) => l.trim() !== '');
    const base = dirname(art.source);
    const rewritten = lines.map((l, i) => {
      let row: { images?: unknown };
      try {
        row = JSON.parse(l) as { images?: unknown };
      } catch (err) {
        throw new SftSetError(`${art.source}:${i + 1}: not JSON (${(err as Error).message})`);
      }
      if (Array.isArray(row.images)) row.images = row.images.map((p) => (typeof p === 'string' && !isAbsolute(p) ? resolve(base, p) : p));
      return JSON.stringify(row);
    });
    await writeFile(out, rewritten.map((l) => `${l}\n`).join(''));
    return { rows: rewritten.length };
  }
  try {
    const written = await exportTrainingSet(db, artifactId, { format: 'trl', out, split: 'train', captions: true });
    return { rows: written.rows };
  } catch (err) {
    if (err instanceof TrainingExportError) throw new SftSetError(err.message, { cause: err });
    throw err;
  }
};
