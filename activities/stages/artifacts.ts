/**
 * What every producing stage does with artifacts: resolve its input (an artifact id, or a dataset
 * imported on the spot for plans from before artifacts), open its output artifacts with their
 * lineage, and write rows in one transaction.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { PoolClient } from 'pg';
import type { Db } from '../../db/client.js';
import type { DatasetRef } from '../../workflows/types.js';
import { importSource } from '../datasets/index.js';

/**
 * The stage's sealed input artifact of `kind` and its row count. A missing, unsealed or other-kind
 * artifact is a non-retryable DatasetError naming the `reader` stage kind.
 */
export async function resolveSourceArtifact(
  db: Db,
  opts: { artifactId?: number; dataset?: DatasetRef; kind: string; reader: string },
): Promise<{ id: number; rows: number }> {
  const { dataset } = opts;
  let id = opts.artifactId ?? dataset?.artifactId;
  if (id === undefined) {
    if (!dataset) throw ApplicationFailure.nonRetryable(`${opts.reader} needs a ${opts.kind} artifact or a dataset`, 'DatasetError');
    if (dataset.path === undefined) throw ApplicationFailure.nonRetryable(`dataset "${dataset.name}" has neither a path nor an artifact`, 'DatasetError');
    id = (await importSource(db, { ...dataset, path: dataset.path })).artifactId;
  }
  const art = (
    await db.$client.query<{ kind: string; rows: number; sealed: boolean }>('select kind, rows, sealed_at is not null as sealed from artifacts where id = $1', [
      id,
    ])
  ).rows[0];
  if (!art || art.kind !== opts.kind || !art.sealed) {
    throw ApplicationFailure.nonRetryable(
      `artifact ${id} is ${art ? (art.sealed ? `a ${art.kind} artifact` : 'not sealed') : 'missing'}; ${opts.reader} reads sealed ${opts.kind}`,
      'DatasetError',
    );
  }
  return { id, rows: art.rows };
}

/** Opens (or reopens, on a retry) the stage's output artifact `name` of `kind`, with `parent` as its lineage. */
export async function openStageArtifact(db: Db, opts: { runId: string; stageId: string; name: string; kind: string; parent: number }): Promise<number> {
  const res = await db.$client.query<{ id: number }>(
    `insert into artifacts (kind, name, run_id, stage_id) values ($1, $2, $3, $4)
     on conflict (run_id, stage_id, name) do update set kind = excluded.kind returning id`,
    [opts.kind, opts.name, opts.runId, opts.stageId],
  );
  const id = res.rows[0]!.id;
  await db.$client.query('insert into artifact_parents (artifact_id, parent_id) values ($1, $2) on conflict do nothing', [id, opts.parent]);
  return id;
}

/** Runs `fn` on one pooled connection inside BEGIN/COMMIT (ROLLBACK on error). */
export async function inTransaction<T>(db: Db, fn: (c: PoolClient) => Promise<T>): Promise<T> {
  const c = await db.$client.connect();
  try {
    await c.query('begin');
    const out = await fn(c);
    await c.query('commit');
    return out;
  } catch (err) {
    await c.query('rollback').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

/** A qa-items row as the stages that read questions (synthesize, sweep) use it, with its image's MIME type. */
export interface QaRow {
  idx: number;
  item_key: string;
  question: string;
  answer: string;
  image_hash: string | null;
  mime: string | null;
  meta: Record<string, unknown>;
}

/** Rows `fromIdx` ≤ idx < `toIdx` of a qa-items artifact, in order. */
export async function qaRows(db: Db, artifactId: number, fromIdx: number, toIdx: number): Promise<QaRow[]> {
  const res = await db.$client.query<QaRow>(
    `select q.idx, q.item_key, q.question, q.answer, q.image_hash, b.mime, q.meta
     from qa_items q left join blobs b on b.hash = q.image_hash
     where q.artifact_id = $1 and q.idx >= $2 and q.idx < $3 order by q.idx`,
    [artifactId, fromIdx, toIdx],
  );
  return res.rows;
}
