/**
 * Progress without history growth: a stage's chunks do not reach the experiment workflow's history
 * (they used to, as one signal per chunk). The parent's history has the same events for a stage of
 * 2 chunks and one of 200, and the running stage's counts are still readable (its own query).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { launchRun } from '../../cli/launch.js';
import { liveProgress } from '../../cli/live-progress.js';
import type { DbHandle } from '../../db/client.js';
import type { RunProgress } from '../../workflows/types.js';
import { uniqueName } from '../helpers/env.js';
import { startWorkerStack, type WorkerStack } from '../helpers/stack.js';
import { specFromObject } from '../helpers/spec.js';

const EventType = temporal.api.enums.v1.EventType;
const TQ = uniqueName('progress');
let db: DbHandle;
let client: Client;
let stack: WorkerStack;

beforeAll(async () => {
  stack = await startWorkerStack(TQ);
  ({ db, client } = stack);
});
afterAll(() => stack?.close());

/** Runs one test-work stage of `chunks` chunks; returns the event types of the parent's and the stage's histories. */
async function runStage(chunks: number, ms: number, onRunning?: (runId: string) => Promise<void>) {
  const loaded = await specFromObject({
    name: uniqueName(`chunks-${chunks}`),
    stages: [{ id: 'work', uses: 'test-work', with: { items: chunks, batch: 1, ms } }],
  });
  const { runId } = await launchRun({ loaded, db: db.db, client, taskQueue: TQ });
  await onRunning?.(runId);
  await client.workflow.getHandle(runId).result();
  const types = async (id: string) => ((await client.workflow.getHandle(id).fetchHistory()).events ?? []).map((e) => EventType[e.eventType!]!);
  return { parent: await types(runId), stage: await types(`${runId}/work`) };
}

describe('stage progress', () => {
  it("keeps the experiment workflow's history independent of the chunk count, and live counts readable", async () => {
    const few = await runStage(2, 20);
    let seen: RunProgress | undefined;
    const many = await runStage(200, 0, async (runId) => {
      for (let i = 0; i < 400 && !seen; i++) {
        const p = await liveProgress(client, runId);
        const work = p.stages.find((s) => s.id === 'work');
        if (work?.status === 'running' && work.done > 0 && work.done < 200) seen = p;
        else await new Promise((r) => setTimeout(r, 25));
      }
    });

    // The stage did its 200 chunks (one activity each) and 2 ...
    expect(many.stage.filter((t) => t === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED')).toHaveLength(200);
    expect(few.stage.filter((t) => t === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED')).toHaveLength(2);
    // ... without a signal to the parent, which received none.
    expect(many.stage.filter((t) => t.includes('SIGNAL'))).toEqual([]);
    expect(many.parent.filter((t) => t.includes('SIGNAL'))).toEqual([]);
    // The parent's events are those of a 2-chunk stage: the same commands, the same count (± one
    // workflow task, batching of the child's start and completion depends on timing).
    const commands = (types: string[]) => types.filter((t) => !t.startsWith('EVENT_TYPE_WORKFLOW_TASK_'));
    expect(commands(many.parent)).toEqual(commands(few.parent));
    expect(Math.abs(many.parent.length - few.parent.length)).toBeLessThanOrEqual(3);
    // Far below one event per chunk (the old code had a signal per chunk: over 200 here).
    expect(many.parent.length).toBeLessThan(100);

    // While it ran, the stage's counts were live (from its own query) and the parent's progress
    // query still gave the run's shape.
    const work = seen?.stages.find((s) => s.id === 'work');
    expect(work?.total).toBe(200);
    expect(work?.failed).toBe(0);
    expect(work?.done).toBeGreaterThan(0);
  });
});
