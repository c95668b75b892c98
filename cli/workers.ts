import { readRecord } from '../runtime/daemon.js';
import type { Connected } from './connect.js';

/**
 * A poller counts as live when it polled within this window. Temporal lists every poller seen in
 * the last minutes, a worker killed with -9 included; a live idle worker re-polls about once a
 * minute (the server's long-poll expiry), so two minutes without a poll means nobody is there.
 */
const LIVE_POLL_MS = 120_000;

/** The queues among `queues` that no worker has polled lately (workflow or activity tasks). */
export async function queuesWithoutWorkers(conn: Connected, queues: string[]): Promise<string[]> {
  // Every queue and type asked at once: one round trip of waiting, not two per queue.
  const live = await Promise.all(
    [...new Set(queues)].map(async (queue) => {
      const polled = await Promise.all(
        // 1 = workflow, 2 = activity task queue (TaskQueueType enum)
        [1, 2].map(async (taskQueueType) => {
          const res = await conn.client.workflowService.describeTaskQueue({ namespace: conn.cfg.namespace, taskQueue: { name: queue }, taskQueueType });
          const now = Date.now();
          return (res.pollers ?? []).some((p) => now - Number(p.lastAccessTime?.seconds ?? 0) * 1000 < LIVE_POLL_MS);
        }),
      );
      return { queue, live: polled.some(Boolean) };
    }),
  );
  return live.filter((q) => !q.live).map((q) => q.queue);
}

/** What to tell the user about a queue nobody polls: the command that fixes it. */
export function noWorkerHint(conn: Connected, queue: string): string {
  const embedded = !(conn.cfg.databaseUrl && conn.cfg.temporalAddress);
  const main = queue === conn.cfg.taskQueue;
  if (embedded && main) {
    const rec = readRecord(conn.cfg.stateDir, 'worker');
    return `no worker polls task queue "${queue}"${rec ? ` (the embedded worker, pid ${rec.pid}, is being restarted or is stuck: see ${rec.logPath})` : ''}; the run waits until one does; \`judgeflow up\` starts the embedded worker`;
  }
  return `no worker polls task queue "${queue}"; the run waits until one does (start one with \`judgeflow worker${main ? '' : ` --task-queue ${queue}`}\`)`;
}
