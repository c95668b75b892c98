/** Queries over ablation groups and run lineage (replays, reused stages). */
import { asc, eq } from 'drizzle-orm';
import type { Db } from './client.js';
import { experiments, runs } from './schema/index.js';

export interface GroupRun {
  id: string;
  experiment: string;
  label: string;
  status: string;
  groupId: string | null;
  axes: Record<string, unknown> | null;
  replayOf: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  error: string | null;
}

const columns = {
  id: runs.id,
  experiment: experiments.name,
  label: runs.label,
  status: runs.status,
  groupId: runs.groupId,
  axes: runs.axes,
  replayOf: runs.replayOf,
  createdAt: runs.createdAt,
  startedAt: runs.startedAt,
  finishedAt: runs.finishedAt,
  error: runs.error,
};

/** The runs of a group, in launch order (then by id). */
export async function groupRuns(db: Db, groupId: string): Promise<GroupRun[]> {
  return db
    .select(columns)
    .from(runs)
    .innerJoin(experiments, eq(runs.experimentId, experiments.id))
    .where(eq(runs.groupId, groupId))
    .orderBy(asc(runs.createdAt), asc(runs.id));
}

/** Groups with their run counts by status, newest first. */
export async function listGroups(
  db: Db,
  limit = 50,
): Promise<{ groupId: string; experiment: string; runs: number; succeeded: number; failed: number; running: number; createdAt: Date }[]> {
  const res = await db.$client.query<{
    group_id: string;
    experiment: string;
    runs: number;
    succeeded: number;
    failed: number;
    running: number;
    created_at: Date;
  }>(
    `select r.group_id, min(e.name) as experiment, count(*)::int as runs,
            count(*) filter (where r.status = 'succeeded')::int as succeeded,
            count(*) filter (where r.status in ('failed', 'cancelled'))::int as failed,
            count(*) filter (where r.status in ('running', 'pending'))::int as running,
            min(r.created_at) as created_at
     from runs r join experiments e on e.id = r.experiment_id
     where r.group_id is not null group by r.group_id order by min(r.created_at) desc limit $1`,
    [limit],
  );
  return res.rows.map((r) => ({
    groupId: r.group_id,
    experiment: r.experiment,
    runs: r.runs,
    succeeded: r.succeeded,
    failed: r.failed,
    running: r.running,
    createdAt: r.created_at,
  }));
}
