import { desc, eq, asc } from 'drizzle-orm';
import type { Db } from './client.js';
import { experiments, runs, stages } from './schema/index.js';

export async function listRuns(db: Db, limit = 50) {
  return db
    .select({
      id: runs.id,
      experiment: experiments.name,
      label: runs.label,
      status: runs.status,
      specHash: experiments.specHash,
      codeVersion: runs.codeVersion,
      createdAt: runs.createdAt,
      startedAt: runs.startedAt,
      finishedAt: runs.finishedAt,
      error: runs.error,
    })
    .from(runs)
    .innerJoin(experiments, eq(runs.experimentId, experiments.id))
    .orderBy(desc(runs.createdAt))
    .limit(limit);
}

export async function getRun(db: Db, runId: string) {
  const [row] = await db
    .select({ run: runs, experiment: { name: experiments.name, specHash: experiments.specHash } })
    .from(runs)
    .innerJoin(experiments, eq(runs.experimentId, experiments.id))
    .where(eq(runs.id, runId));
  return row;
}

export async function getStages(db: Db, runId: string) {
  return db.select().from(stages).where(eq(stages.runId, runId)).orderBy(asc(stages.startedAt), asc(stages.stageId));
}
