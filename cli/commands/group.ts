/** Ablation groups in the CLI: launching one (from `run`), and `status` / `cancel` on a group id. */
import { WorkflowFailedError } from '@temporalio/client';
import { groupRuns } from '../../db/groups.js';
import type { GroupPlan } from '../ablation-group.js';
import type { Connected } from '../connect.js';
import { EXIT } from '../errors.js';
import { launchRun } from '../launch.js';
import { table } from '../render.js';

/** Launches every run of the group; without `detach`, waits for all and prints the group. */
export async function runGroup(conn: Connected, group: GroupPlan, opts: { detach: boolean; json: boolean; log: (line: string) => void }): Promise<number> {
  const launched = [];
  for (const m of group.members) {
    const res = await launchRun({
      loaded: m.loaded,
      db: conn.db.db,
      client: conn.client,
      taskQueue: conn.cfg.taskQueue,
      runId: m.runId,
      groupId: group.groupId,
      axes: m.axes,
    });
    launched.push(res);
    opts.log(`run ${res.runId}: ${res.attached ? 'already exists (attached)' : res.resumed ? 'resuming' : 'started'} ${JSON.stringify(m.axes)}`);
  }
  opts.log(`group ${group.groupId}: ${launched.length} runs`);
  if (!opts.detach) {
    await Promise.all(
      launched.map((l) =>
        conn.client.workflow
          .getHandle(l.runId)
          .result()
          .catch((err: unknown) => {
            if (!(err instanceof WorkflowFailedError)) throw err;
          }),
      ),
    );
  }
  const rows = await groupRuns(conn.db.db, group.groupId);
  if (opts.json) console.log(JSON.stringify({ groupId: group.groupId, runs: rows }));
  else console.log(renderGroup(group.groupId, rows));
  return opts.detach || rows.every((r) => r.status === 'succeeded') ? EXIT.ok : EXIT.runFailed;
}

export function renderGroup(groupId: string, rows: Awaited<ReturnType<typeof groupRuns>>): string {
  const axes = [...new Set(rows.flatMap((r) => Object.keys(r.axes ?? {})))];
  return `group ${groupId}: ${rows.length} runs\n${table(
    ['run', ...axes, 'status', 'error'],
    rows.map((r) => [r.id, ...axes.map((a) => String(r.axes?.[a] ?? '')), r.status, (r.error ?? '').slice(0, 80)]),
  )}`;
}

/** `status <group>`: one line per run. */
export async function groupStatus(conn: Connected, groupId: string, json: boolean): Promise<number> {
  const rows = await groupRuns(conn.db.db, groupId);
  console.log(json ? JSON.stringify({ groupId, runs: rows }) : renderGroup(groupId, rows));
  return rows.every((r) => ['succeeded', 'running', 'pending'].includes(r.status)) ? EXIT.ok : EXIT.runFailed;
}

/** `cancel <group>`: cancels every run of the group still running. */
export async function groupCancel(conn: Connected, groupId: string, json: boolean): Promise<number> {
  const rows = await groupRuns(conn.db.db, groupId);
  const cancelled: string[] = [];
  for (const r of rows) {
    const handle = conn.client.workflow.getHandle(r.id);
    const desc = await handle.describe();
    if (desc.status.name !== 'RUNNING') continue;
    await handle.cancel();
    cancelled.push(r.id);
  }
  for (const id of cancelled) {
    await conn.client.workflow
      .getHandle(id)
      .result()
      .catch((err: unknown) => {
        if (!(err instanceof WorkflowFailedError)) throw err;
      });
  }
  console.log(
    json
      ? JSON.stringify({ groupId, cancelled })
      : `group ${groupId}: cancelled ${cancelled.length} of ${rows.length} runs${cancelled.length ? ` (${cancelled.join(', ')})` : ''}`,
  );
  return EXIT.ok;
}
