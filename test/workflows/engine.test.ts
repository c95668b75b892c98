import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkflowFailedError } from '@temporalio/client';
import { eq, sql } from 'drizzle-orm';
import { launchRun } from '../../cli/launch.js';
import { runs, stages } from '../../db/schema/index.js';
import { liveProgress } from '../../cli/live-progress.js';
import type { RunProgress } from '../../workflows/types.js';
import { uniqueName } from '../helpers/env.js';
import { startWorkerStack, type WorkerStack } from '../helpers/stack.js';
import { diamond, specFromObject } from '../helpers/spec.js';
import type { DbHandle } from '../../db/client.js';
import type { Client } from '@temporalio/client';

const TQ = uniqueName('engine');
let db: DbHandle;
let client: Client;
let stack: WorkerStack;

beforeAll(async () => {
  stack = await startWorkerStack(TQ);
  ({ db, client } = stack);
});
afterAll(() => stack?.close());

async function stageRows(runId: string) {
  const rows = await db.db.select().from(stages).where(eq(stages.runId, runId));
  return Object.fromEntries(rows.map((r) => [r.stageId, r]));
}

describe('experiment engine', () => {
  it('runs a diamond DAG in dependency order, the middle stages overlapping, with live progress', async () => {
    const loaded = await specFromObject(diamond(uniqueName('diamond'), 250));
    const { runId, attached } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
    expect(attached).toBe(false);
    const handle = client.workflow.getHandle(runId);

    // Progress is queryable while the middle stages run.
    let seen: RunProgress | undefined;
    for (let i = 0; i < 100 && !seen; i++) {
      const p = await liveProgress(client, runId);
      if (p.stages.some((s) => s.id === 'b' && s.status === 'running' && s.done > 0)) seen = p;
      else await new Promise((r) => setTimeout(r, 50));
    }
    expect(seen?.stages.find((s) => s.id === 'b')?.total).toBe(4);
    expect(seen?.stages.find((s) => s.id === 'd')?.status).toBe('pending');

    await handle.result();
    const s = await stageRows(runId);
    for (const id of ['a', 'b', 'c', 'd']) {
      expect(s[id]!.status).toBe('succeeded');
      expect(s[id]!.attempts).toBe(1);
    }
    const t = (id: string, k: 'startedAt' | 'finishedAt') => s[id]![k]!.getTime();
    expect(t('a', 'finishedAt')).toBeLessThanOrEqual(t('b', 'startedAt'));
    expect(t('a', 'finishedAt')).toBeLessThanOrEqual(t('c', 'startedAt'));
    // b and c overlap in time.
    expect(t('b', 'startedAt')).toBeLessThan(t('c', 'finishedAt'));
    expect(t('c', 'startedAt')).toBeLessThan(t('b', 'finishedAt'));
    expect(t('d', 'startedAt')).toBeGreaterThanOrEqual(Math.max(t('b', 'finishedAt'), t('c', 'finishedAt')));
    expect(s.b!.itemsDone).toBe(4);
    const [run] = await db.db.select().from(runs).where(eq(runs.id, runId));
    expect(run!.status).toBe('succeeded');
    expect(run!.finishedAt).not.toBeNull();
    const items = await db.pool.query('select stage_id, count(*)::int as n from test_items where run_id = $1 group by stage_id order by stage_id', [runId]);
    expect(items.rows).toEqual([
      { stage_id: 'a', n: 2 },
      { stage_id: 'b', n: 4 },
      { stage_id: 'c', n: 4 },
      { stage_id: 'd', n: 2 },
    ]);
  });

  it('launching the same experiment twice gives one run', async () => {
    const spec = diamond(uniqueName('twice'), 20);
    const first = await launchRun({ loaded: await specFromObject(spec), db: db.db, client, taskQueue: TQ });
    // Same spec, different key order and formatting: same version, same run.
    const reordered = { stages: spec.stages, seed: spec.seed, name: spec.name };
    const second = await launchRun({ loaded: await specFromObject(reordered), db: db.db, client, taskQueue: TQ });
    expect(second.runId).toBe(first.runId);
    expect(second.attached).toBe(true);
    await client.workflow.getHandle(first.runId).result();
    const third = await launchRun({ loaded: await specFromObject(spec), db: db.db, client, taskQueue: TQ });
    expect(third.attached).toBe(true);
    const rows = await db.db.select().from(runs).where(eq(runs.id, first.runId));
    expect(rows).toHaveLength(1);
    expect(rows[0]!.executions).toBe(1);
    const count = await db.pool.query('select count(*)::int as n from test_items where run_id = $1', [first.runId]);
    expect(count.rows[0].n).toBe(12);
  });

  it('a failing stage skips its dependents, lets the independent branch finish, and fails the run with the error', async () => {
    const loaded = await specFromObject({
      name: uniqueName('failing'),
      stages: [
        { id: 'a', uses: 'test-work', with: { items: 1, ms: 10 } },
        { id: 'bad', uses: 'test-work', needs: ['a'], with: { fail: 'judge endpoint exploded' } },
        { id: 'after-bad', uses: 'test-work', needs: ['bad'] },
        { id: 'side', uses: 'test-work', needs: ['a'], with: { items: 4, ms: 100 } },
      ],
    });
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
    const err = await client.workflow
      .getHandle(runId)
      .result()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const s = await stageRows(runId);
    expect(s.bad!.status).toBe('failed');
    expect(s.bad!.error).toContain('judge endpoint exploded');
    expect(s['after-bad']!.status).toBe('skipped');
    expect(s['after-bad']!.error).toContain('bad');
    expect(s.side!.status).toBe('succeeded');
    expect(s.side!.itemsDone).toBe(4);
    const [run] = await db.db.select().from(runs).where(eq(runs.id, runId));
    expect(run!.status).toBe('failed');
    expect(run!.error).toContain('judge endpoint exploded');
  });

  it('relaunching a failed run resumes it: succeeded stages are kept, not re-run', async () => {
    const name = uniqueName('resume');
    const spec = {
      name,
      stages: [
        { id: 'a', uses: 'test-work', with: { items: 2, ms: 10 } },
        { id: 'b', uses: 'test-work', needs: ['a'], with: { fail: 'transient outage' } },
      ],
    };
    const loaded = await specFromObject(spec);
    const first = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
    await client.workflow
      .getHandle(first.runId)
      .result()
      .catch(() => undefined);
    const again = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
    expect(again).toMatchObject({ runId: first.runId, attached: false, resumed: true });
    await client.workflow
      .getHandle(first.runId)
      .result()
      .catch(() => undefined);
    const s = await stageRows(first.runId);
    expect(s.a!.attempts).toBe(1);
    expect(s.b!.attempts).toBe(2);
    const [run] = await db.db.select().from(runs).where(eq(runs.id, first.runId));
    expect(run!.executions).toBe(2);
  });

  it('cancelling a run cancels its stages', async () => {
    const loaded = await specFromObject({
      name: uniqueName('cancel'),
      stages: [
        { id: 'slow', uses: 'test-work', with: { items: 50, ms: 200, batch: 5 } },
        { id: 'later', uses: 'test-work', needs: ['slow'] },
      ],
    });
    const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
    const handle = client.workflow.getHandle(runId);
    for (let i = 0; i < 100; i++) {
      const p = await liveProgress(client, runId);
      if ((p.stages.find((st) => st.id === 'slow')?.done ?? 0) > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await handle.cancel();
    await expect(handle.result()).rejects.toBeInstanceOf(WorkflowFailedError);
    const s = await stageRows(runId);
    expect(s.slow!.status).toBe('cancelled');
    expect(s.later!.status).toBe('cancelled');
    const [run] = await db.db.select().from(runs).where(eq(runs.id, runId));
    expect(run!.status).toBe('cancelled');
    const child = await client.workflow.getHandle(`${runId}/slow`).describe();
    expect(child.status.name).toBe('CANCELLED');
    const n = await db.db
      .select({ n: sql<number>`count(*)::int` })
      .from(stages)
      .where(eq(stages.runId, runId));
    expect(n[0]!.n).toBe(2);
  });
});
