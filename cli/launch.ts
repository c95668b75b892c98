import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { WorkflowIdReusePolicy } from '@temporalio/common';
import { eq } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { importPlanDatasets } from '../activities/datasets/index.js';
import { experiments, runs, stages } from '../db/schema/index.js';
import { PACKAGE_ROOT, runIdFor, type LoadedSpec } from '../spec/load.js';
import type { ExperimentInput } from '../workflows/types.js';
import { seedReusedStages, type LaunchExtras } from './replay-plan.js';

const execFileAsync = promisify(execFile);

export interface LaunchResult {
  runId: string;
  /** true when a run with this id was already running or finished: nothing new started. */
  attached: boolean;
  /** true when a failed or cancelled run was started again (succeeded stages are kept). */
  resumed: boolean;
  /** true when the server handed the workflow's first task to this process's worker in the start's reply (eager start). */
  eagerlyStarted?: boolean;
}

/** The git commit of the judgeflow checkout, with "-dirty" for uncommitted changes; null outside git. */
export async function codeVersion(): Promise<string | null> {
  try {
    // One git process for both (the commit in the header, a line per changed file after it): in the
    // resident launcher, each spawn from the worker's large process holds its event loop for ms.
    const { stdout } = await execFileAsync('git', ['status', '--porcelain=v2', '--branch', '--untracked-files=no'], { cwd: PACKAGE_ROOT, encoding: 'utf8' });
    const lines = stdout.split('\n').filter((l) => l !== '');
    const head = /^# branch\.oid ([0-9a-f]+)$/m.exec(stdout)?.[1];
    if (head === undefined) return null; // no commit yet ("(initial)")
    return lines.some((l) => !l.startsWith('#')) ? `${head}-dirty` : head;
  } catch {
    return null;
  }
}

/**
 * Records the experiment, run and stage rows (idempotently) and starts the experiment workflow.
 * The same spec + overrides + label always gives the same run id, so launching twice attaches.
 */
export async function launchRun(
  opts: {
    loaded: LoadedSpec;
    label?: string;
    db: Db;
    client: Client;
    /**
     * A client on the NativeConnection of a worker in this process that polls `taskQueue`: the
     * workflow is started with eager start, its first workflow task handed to that worker in the
     * start's reply (a round trip through the task queue fewer). The server may decline (its
     * setting, or no free slot): the task then goes through the queue as without it.
     */
    eagerStartClient?: Client;
    taskQueue: string;
  } & LaunchExtras,
): Promise<LaunchResult> {
  const { loaded, db, client } = opts;
  const runId = opts.runId ?? runIdFor(loaded.spec.name, loaded.hash, opts.label);
  const version = codeVersion();
  // File datasets become artifacts here, where the files are: stages get ids, never paths.
  const plan = (await importPlanDatasets(db, loaded.plan, loaded.sources)).map((s) => (opts.noReuse?.includes(s.id) ? { ...s, reuse: false } : s));
  // The loads are in Postgres now: a command that follows the run for hours does not hold them.
  loaded.sources = undefined;
  const previous = await db.transaction(async (tx) => {
    await tx
      .insert(experiments)
      .values({
        name: loaded.spec.name,
        description: loaded.spec.description,
        specHash: loaded.hash,
        specJson: loaded.spec,
        specText: loaded.specText,
        specPath: loaded.specPath,
      })
      .onConflictDoNothing({ target: [experiments.name, experiments.specHash] });
    const [exp] = await tx.select({ id: experiments.id }).from(experiments).where(eq(experiments.specHash, loaded.hash));
    const [existing] = await tx.select({ status: runs.status }).from(runs).where(eq(runs.id, runId));
    await tx
      .insert(runs)
      .values({
        id: runId,
        experimentId: exp!.id,
        label: opts.label ?? '',
        overrides: loaded.overrides,
        codeVersion: await version,
        seed: loaded.spec.seed,
        plan,
        groupId: opts.groupId,
        axes: opts.axes,
        replayOf: opts.replay?.of,
        replayFrom: opts.replay?.from,
      })
      .onConflictDoNothing({ target: runs.id });
    await tx
      .insert(stages)
      .values(loaded.plan.map((s) => ({ runId, stageId: s.id, kind: s.kind, needs: s.needs })))
      .onConflictDoNothing();
    if (opts.reused && !existing) await seedReusedStages(tx, runId, opts.reused);
    return existing?.status;
  });

  try {
    const handle = await (opts.eagerStartClient ?? client).workflow.start('experimentWorkflow', {
      workflowId: runId,
      taskQueue: opts.taskQueue,
      requestEagerStart: opts.eagerStartClient !== undefined,
      args: [{ runId } satisfies ExperimentInput],
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
      memo: { experiment: loaded.spec.name, specHash: loaded.hash },
    });
    return { runId, attached: false, resumed: previous === 'failed' || previous === 'cancelled', eagerlyStarted: handle.eagerlyStarted };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return { runId, attached: true, resumed: false };
    throw err;
  }
}
