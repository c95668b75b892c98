/** Queries over artifacts for the CLI: a run's artifacts with their lineage. */
import type { Db } from './client.js';

export interface ArtifactListing {
  id: number;
  kind: string;
  name: string;
  /** The producing stage, or null for an imported file. */
  stageId: string | null;
  source: string | null;
  format: string | null;
  rows: number;
  contentHash: string;
  parents: number[];
  summary: Record<string, unknown>;
  sealed: boolean;
}

/**
 * The artifacts of a run: those its stages produced and the imported datasets its plan read,
 * imports first, then in creation order.
 */
export async function runArtifacts(db: Db, runId: string): Promise<ArtifactListing[]> {
  const res = await db.$client.query<{
    id: number;
    kind: string;
    name: string;
    stage_id: string | null;
    source: string | null;
    format: string | null;
    rows: number;
    content_hash: string;
    parents: number[] | null;
    summary: Record<string, unknown>;
    sealed: boolean;
  }>(
    `with used as (
       select (d.value->>'artifactId')::int as id
       from runs r, jsonb_array_elements(r.plan) s, jsonb_each(coalesce(s->'datasets', '{}'::jsonb)) d
       where r.id = $1 and d.value ? 'artifactId')
     select a.id, a.kind, a.name, a.stage_id, a.source, a.format, a.rows, a.content_hash, a.summary, a.sealed_at is not null as sealed,
            (select array_agg(p.parent_id order by p.parent_id) from artifact_parents p where p.artifact_id = a.id) as parents
     from artifacts a
     where a.run_id = $1 or a.id in (select id from used)
     order by a.run_id is not null, a.id`,
    [runId],
  );
  return res.rows.map((r) => ({
    id: r.id,
    kind: r.kind,
    name: r.name,
    stageId: r.stage_id,
    source: r.source,
    format: r.format,
    rows: r.rows,
    contentHash: r.content_hash,
    parents: r.parents ?? [],
    summary: r.summary,
    sealed: r.sealed,
  }));
}
