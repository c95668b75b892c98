import { Context } from '@temporalio/activity';
import type { Db } from '../../db/client.js';

export const TEST_ITEMS_DDL = `create table if not exists test_items (
  run_id text not null, stage_id text not null, idx integer not null, worker_pid integer not null,
  created_at timestamptz not null default now(), primary key (run_id, stage_id, idx))`;

/** Activities of the test-only stage kinds; idempotent like the real ones. */
export function createTestActivities(db: Db) {
  return {
    async testWorkBatch({ runId, stageId, from, to, ms }: { runId: string; stageId: string; from: number; to: number; ms: number }): Promise<void> {
      const ctx = Context.current();
      const resume = (ctx.info.heartbeatDetails as number | undefined) ?? from;
      for (let i = resume; i < to; i++) {
        if (ms > 0) await ctx.sleep(ms);
        await db.$client.query('insert into test_items (run_id, stage_id, idx, worker_pid) values ($1, $2, $3, $4) on conflict do nothing', [
          runId,
          stageId,
          i,
          process.pid,
        ]);
        ctx.heartbeat(i + 1);
      }
    },
  };
}
export type TestActivities = ReturnType<typeof createTestActivities>;
