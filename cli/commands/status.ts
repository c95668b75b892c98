import { WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { getRun, getStages } from '../../db/queries.js';
import { progressQuery, type RunProgress, type StageStatusName } from '../../workflows/types.js';
import { parseFlags } from '../args.js';
import { connect, type Connected } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';
import { renderProgress } from '../render.js';
import { groupRuns } from '../../db/groups.js';
import { groupStatus } from './group.js';
import { temporalUiBase, workflowUrl } from '../web-ui.js';

const USAGE = `usage: judgeflow status <run|group> [--watch] [--json]

Shows each stage of a run: status, items done/total, failures, ETA, errors, the stage it was
reused from, and its Temporal Web UI page. Given an ablation group id: one line per run.
  --watch   follow the run until it ends (exit 0 succeeded, 1 failed or cancelled)
  --json    machine-readable output`;

export async function statusCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { watch: { type: 'boolean' }, json: { type: 'boolean' } }, USAGE);
  if (positionals.length !== 1) throw new UsageError(`expected one run id (see \`judgeflow list\`)\n\n${USAGE}`);
  const conn = await connect();
  try {
    const runId = positionals[0]!;
    if (!(await getRun(conn.db.db, runId))) {
      if ((await groupRuns(conn.db.db, runId)).length > 0) return await groupStatus(conn, runId, Boolean(values.json));
      throw new UsageError(`no run or group "${runId}"; \`judgeflow list\` shows the runs`);
    }
    if (values.watch) return await watchRun(conn, runId, { json: Boolean(values.json), attached: true });
    const progress = await currentProgress(conn, runId);
    const ui = temporalUiBase(conn.cfg);
    const links = ui ? Object.fromEntries(progress.stages.map((s) => [s.id, workflowUrl(ui, conn.cfg.namespace, `${runId}/${s.id}`)])) : {};
    if (values.json) console.log(JSON.stringify({ ...progress, temporalUi: ui ? { run: workflowUrl(ui, conn.cfg.namespace, runId), stages: links } : undefined }));
    else {
      console.log(renderProgress(progress));
      if (ui) console.log(`\nTemporal Web UI: ${workflowUrl(ui, conn.cfg.namespace, runId)}\n${Object.entries(links).map(([id, url]) => `  ${id}: ${url}`).join('\n')}`);
    }
    return progress.status === 'succeeded' || progress.status === 'running' ? EXIT.ok : EXIT.runFailed;
  } finally {
    await conn.close();
  }
}

/** Live progress from the workflow while it runs; the Postgres record once it has ended. */
export async function currentProgress(conn: Connected, runId: string): Promise<RunProgress> {
  const handle = conn.client.workflow.getHandle(runId);
  try {
    const desc = await handle.describe();
    if (desc.status.name === 'RUNNING') {
      const live = await handle.query(progressQuery);
      // Stages taken from another run at launch (replay) say so only in Postgres.
      const rows = await getStages(conn.db.db, runId);
      for (const s of live.stages) {
        const r = rows.find((x) => x.stageId === s.id);
        if (!s.reusedFrom && r?.reusedFromRun) s.reusedFrom = `${r.reusedFromRun}/${r.reusedFromStage}`;
      }
      return live;
    }
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
  }
  return progressFromDb(conn, runId);
}

export async function progressFromDb(conn: Connected, runId: string): Promise<RunProgress> {
  const run = await getRun(conn.db.db, runId);
  const rows = await getStages(conn.db.db, runId);
  const status = (run?.run.status ?? 'running') as RunProgress['status'] | 'pending';
  return {
    runId,
    status: status === 'pending' ? 'running' : status,
    stages: rows.map((s) => ({
      id: s.stageId,
      kind: s.kind,
      status: s.status as StageStatusName,
      done: s.itemsDone,
      total: s.itemsTotal,
      failed: s.itemsFailed,
      startedAt: s.startedAt?.getTime(),
      finishedAt: s.finishedAt?.getTime(),
      error: s.error ?? undefined,
      reusedFrom: s.reusedFromRun ? `${s.reusedFromRun}/${s.reusedFromStage}` : undefined,
    })),
  };
}

/** Follows a run to its end, redrawing progress; returns the exit code. */
export async function watchRun(conn: Connected, runId: string, opts: { json: boolean; attached: boolean }): Promise<number> {
  const handle = conn.client.workflow.getHandle(runId);
  const tty = process.stderr.isTTY && !opts.json;
  let last = '';
  let lastStates = '';
  let lastLine = 0;
  let finished = false;
  const outcome = handle.result().then(
    () => 'succeeded' as const,
    (err: unknown) => {
      if (err instanceof WorkflowFailedError) return 'failed' as const;
      throw err;
    },
  );
  void outcome.finally(() => (finished = true));
  while (!finished) {
    await Promise.race([outcome, new Promise((r) => setTimeout(r, 1000))]);
    if (finished || opts.json) continue;
    try {
      const progress = await handle.query(progressQuery);
      if (tty) {
        const text = renderProgress(progress);
        if (text !== last) {
          if (last) process.stderr.write(`\x1b[${last.split('\n').length}A\x1b[0J`);
          process.stderr.write(`${text}\n`);
          last = text;
        }
      } else {
        // Logs (CI, nohup): a line when a stage changes status, and progress every 15 s.
        const states = progress.stages.map((st) => `${st.id}=${st.status}`).join(' ');
        if (states !== lastStates || Date.now() - lastLine > 15_000) {
          const counts = progress.stages.filter((st) => st.total > 0).map((st) => `${st.id} ${st.done}/${st.total}`).join(', ');
          process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${states}${counts ? ` (${counts})` : ''}\n`);
          lastStates = states;
          lastLine = Date.now();
        }
      }
    } catch {
      // The run ended between our check and the query: the final record is printed below.
    }
  }
  await outcome;
  const final = await progressFromDb(conn, runId);
  if (opts.json) {
    console.log(JSON.stringify(final));
  } else {
    if (tty && last) process.stderr.write(`\x1b[${last.split('\n').length}A\x1b[0J`);
    console.log(renderProgress(final));
    const run = await getRun(conn.db.db, runId);
    if (run?.run.error) console.log(`error: ${run.run.error}`);
    const { printRunResults } = await import('./results.js');
    await printRunResults(conn, runId);
  }
  return final.status === 'succeeded' ? EXIT.ok : EXIT.runFailed;
}
