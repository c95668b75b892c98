/** Which stages a compare/report/dashboard view covers: `run`, `run/stage`, or a group's runs. */
import type { Db } from '../db/client.js';
import { loadStageSides, type StageSide } from '../db/compare.js';
import { groupRuns } from '../db/groups.js';
import { UsageError } from './errors.js';

export async function resolveSides(db: Db, refs: string[], group?: string): Promise<StageSide[]> {
  const wanted: { runId: string; stageId?: string }[] = [];
  if (group !== undefined) {
    const runs = await groupRuns(db, group);
    if (runs.length === 0) throw new UsageError(`no group "${group}"; \`judgeflow list\` shows runs with their groups`);
    wanted.push(...runs.map((r) => ({ runId: r.id })));
  }
  for (const ref of refs) {
    const slash = ref.indexOf('/');
    wanted.push(slash < 0 ? { runId: ref } : { runId: ref.slice(0, slash), stageId: ref.slice(slash + 1) });
  }
  if (wanted.length === 0) throw new UsageError('name runs (`<run>` or `<run>/<stage>`) or a group (--group G)');
  const { sides, missing } = await loadStageSides(db, wanted);
  if (missing.length > 0) throw new UsageError(`no such run or stage: ${missing.join(', ')}; \`judgeflow list\` shows the runs`);
  return sides;
}
