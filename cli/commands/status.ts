import { WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { getRun, getStages } from '../../db/queries.js';
import { progressQuery, type RunProgress, type StageStatusName } from '../../workflows/types.js';
import { parseFlags } from '../args.js';
import { connect, type Connected } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';
import { renderProgress } from '../render.js';

const USAGE = `usage: judgeflow status <run> [--watch] [--json]

Shows each stage of a run: status, items done/total, failures, ETA, errors.
  --watch   follow the run until it ends (exit 0 succeeded, 1 failed or cancelled)
  --json    machine-readable output`;

export async function statusCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { watch: { type: 'boolean' }, json: { type: 'boolean' } }, USAGE);
  if (positionals.length !== 1) throw new UsageError(`expected one run id (see \`judgeflow list\`)\n\n${USAGE}`);
  const conn = await connect();
  try {
    const runId = positionals[0]!;
    if (!(await getRun(conn.db.db, runId))) throw new UsageError(`no run "${runId}"; \`judgeflow list\` shows the runs`);
    if (values.watch) return await watchRun(conn, runId, { json: Boolean(values.json), attached: true });
    const progress = await currentProgress(conn, runId);
    console.log(values.json ? JSON.stringify(progress) : renderProgress(progress));
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
    if (desc.status.name === 'RUNNING') return await handle.query(progressQuery);
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
    // Redraw every second until the result arrives; the timer is cleared so it never holds the exit.
    let tick: NodeJS.Timeout | undefined;
    await Promise.race([outcome, new Promise((r) => (tick = setTimeout(r, 1000)))]);
    clearTimeout(tick);
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
