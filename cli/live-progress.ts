import { QueryNotRegisteredError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { etaSeconds } from '../workflows/progress.js';
import { progressQuery, stageProgressQuery, type RunProgress } from '../workflows/types.js';

/**
 * A running experiment's progress: stage statuses from the experiment workflow's `progress` query,
 * live counts of each running stage from the stage workflow's own `stageProgress` query (stages no
 * longer signal the parent per chunk, which kept its history growing with the chunk count).
 * A stage that has not reported yet keeps the parent's figures.
 */
export async function liveProgress(client: Client, runId: string): Promise<RunProgress> {
  const run = await client.workflow.getHandle(runId).query(progressQuery);
  const now = Date.now();
  const stages = await Promise.all(
    run.stages.map(async (s) => {
      if (s.status !== 'running') return s;
      const live = await client.workflow
        .getHandle(`${runId}/${s.id}`)
        .query(stageProgressQuery)
        .catch((err: unknown) => {
          // Not started yet (the parent marks a stage running first), or no report yet.
          if (err instanceof WorkflowNotFoundError || err instanceof QueryNotRegisteredError) return undefined;
          throw err;
        });
      if (!live) return s;
      const merged = { ...s, done: live.done, total: live.total, failed: live.failed };
      return { ...merged, etaSeconds: etaSeconds(merged, now) };
    }),
  );
  return { ...run, stages };
}
