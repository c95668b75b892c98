import { WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import type { StagePlan } from '../../workflows/types.js';
import { getRun, getStages } from '../../db/queries.js';
import type { RunProgress, StageStatusName } from '../../workflows/types.js';
import { parseFlags } from '../args.js';
import { connect, type Connected } from '../connect.js';
import { EXIT, isTemporalUnreachable, UsageError } from '../errors.js';
import { processIo, type Io } from '../io.js';
import { liveProgress } from '../live-progress.js';
import { renderProgress } from '../render.js';
import { noWorkerHint, queuesWithoutWorkers } from '../workers.js';
import { groupRuns } from '../../db/groups.js';
import { groupStatus } from './group.js';
import { temporalUiBase, workflowUrl } from '../web-ui.js';

const USAGE = `usage: judgeflow status <run|group> [--watch] [--json]

Shows each stage of a run: status, items done/total, failures, ETA, errors, the stage it was
reused from, and its Temporal Web UI page. Given an ablation group id: one line per run.
  --watch   follow the run until it ends (exit 0 succeeded, 1 failed or cancelled; 3 when contact
            with Temporal is lost for longer than JUDGEFLOW_RECONNECT_TIMEOUT_S, default 300,
            and 130 on Ctrl-C: then the run goes on)
  --json    machine-readable output`;

export async function statusCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { watch: { type: 'boolean' }, json: { type: 'boolean' } }, USAGE);
  if (positionals.length !== 1) throw new UsageError(`expected one run id (see \`judgeflow list\`)\n\n${USAGE}`);
  const conn = await connect();
  try {
    const runId = positionals[0]!;
    const run = await getRun(conn.db.db, runId);
    if (!run) {
      if ((await groupRuns(conn.db.db, runId)).length > 0) return await groupStatus(conn, runId, Boolean(values.json));
      throw new UsageError(`no run or group "${runId}"; \`judgeflow list\` shows the runs`);
    }
    if (values.watch) {
      const taskQueues = [conn.cfg.taskQueue, ...((run.run.plan ?? []) as StagePlan[]).flatMap((st) => (st.taskQueue ? [st.taskQueue] : []))];
      return await watchRun(conn, runId, { json: Boolean(values.json), attached: true, taskQueues });
    }
    const progress = await currentProgress(conn, runId);
    const ui = temporalUiBase(conn.cfg);
    const links = ui ? Object.fromEntries(progress.stages.map((s) => [s.id, workflowUrl(ui, conn.cfg.namespace, `${runId}/${s.id}`)])) : {};
    if (values.json)
      console.log(JSON.stringify({ ...progress, temporalUi: ui ? { run: workflowUrl(ui, conn.cfg.namespace, runId), stages: links } : undefined }));
    else {
      console.log(renderProgress(progress));
      if (ui)
        console.log(
          `\nTemporal Web UI: ${workflowUrl(ui, conn.cfg.namespace, runId)}\n${Object.entries(links)
            .map(([id, url]) => `  ${id}: ${url}`)
            .join('\n')}`,
        );
    }
    return progress.status === 'succeeded' || progress.status === 'running' ? EXIT.ok : EXIT.runFailed;
  } finally {
    await conn.close();
  }
}

/** How long a live progress query may take: a query needs a worker of the run's queue to answer. */
const LIVE_QUERY_MS = 3_000;

/**
 * Live progress from the workflow while it runs; the Postgres record once it has ended, or when
 * its query does not answer within LIVE_QUERY_MS (all its workers stopped: the run waits for one,
 * and the dashboard and `status` still show what Postgres has).
 */
export async function currentProgress(conn: Connected, runId: string): Promise<RunProgress> {
  const handle = conn.client.workflow.getHandle(runId);
  try {
    const desc = await handle.describe();
    if (desc.status.name === 'RUNNING') {
      let live: RunProgress;
      try {
        live = await conn.client.withDeadline(Date.now() + LIVE_QUERY_MS, () => liveProgress(conn.client, runId));
      } catch {
        // Temporal answered describe: whatever kept the query from answering (no worker within
        // the deadline, the run ending meanwhile), Postgres has the run's recorded progress.
        return progressFromDb(conn, runId);
      }
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

/** The command that follows a run again after this terminal stopped following it. */
export const reattachCommand = (runId: string) => `judgeflow status ${runId} --watch`;

/** How long a follower keeps reconnecting to a Temporal server that went away (seconds). */
function reconnectTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.JUDGEFLOW_RECONNECT_TIMEOUT_S;
  if (raw === undefined || raw === '') return 300_000;
  const s = Number(raw);
  if (!Number.isFinite(s) || s < 0) throw new UsageError(`JUDGEFLOW_RECONNECT_TIMEOUT_S=${raw}: expected a number of seconds (default 300)`);
  return s * 1000;
}

type Outcome = { kind: 'succeeded' } | { kind: 'failed' } | { kind: 'lost'; err: unknown } | { kind: 'gone' } | { kind: 'error'; err: unknown };

/**
 * Follows a run to its end, redrawing progress; returns the exit code. The run lives in Temporal
 * and the workers, not here, so nothing this terminal goes through ends it: a Temporal server that
 * goes away is waited for (reconnecting with backoff for JUDGEFLOW_RECONNECT_TIMEOUT_S, then exit
 * 3), Ctrl-C stops following (exit 130); both say how to follow again.
 */
export async function watchRun(conn: Connected, runId: string, opts: { json: boolean; attached: boolean; taskQueues?: string[]; io?: Io }): Promise<number> {
  const io = opts.io ?? processIo;
  const handle = conn.client.workflow.getHandle(runId);
  const tty = io.errTTY && !opts.json;
  const say = (line: string) => io.err(line);
  const maxReconnectMs = reconnectTimeoutMs(io.env);
  // The results table's code loads while the run goes on, not after it ended.
  const resultsModule = import('./results.js');
  resultsModule.catch(() => {}); // awaited (and its failure reported) at the end; never unhandled
  let last = '';
  let lastStates = '';
  let lastLine = 0;
  let lastPollerCheck = Date.now();
  const warnedQueues = new Set<string>();

  // Ctrl-C wakes every wait below; the loop then says how to re-attach and returns 130.
  let interrupted = false;
  let wake = () => {};
  const onSigint = () => {
    interrupted = true;
    wake();
  };
  const stopListening = io.onInterrupt(onSigint);
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });

  // The outcome of one `result()` long poll; it never rejects, so an abandoned one is harmless.
  // Leaving (Ctrl-C, gave up) aborts the poll still pending, which would keep the process alive.
  const abandon = new AbortController();
  const follow = () => {
    const state: { value?: Outcome; done: Promise<unknown> } = { done: Promise.resolve() };
    state.done = conn.client
      .withAbortSignal(abandon.signal, () => handle.result())
      .then(
        () => (state.value = { kind: 'succeeded' }),
        (err: unknown) =>
          (state.value =
            err instanceof WorkflowFailedError
              ? { kind: 'failed' }
              : err instanceof WorkflowNotFoundError
                ? { kind: 'gone' }
                : isTemporalUnreachable(err)
                  ? { kind: 'lost', err }
                  : { kind: 'error', err }),
      );
    return state;
  };

  let current = follow();
  let lostSince: number | undefined;
  let attempt = 0;
  try {
    for (;;) {
      if (interrupted) {
        if (tty && last) say('');
        say(`stopped following run ${runId} (Ctrl-C); the run goes on. Follow it again: ${reattachCommand(runId)}   (stop it: judgeflow cancel ${runId})`);
        return EXIT.interrupted;
      }
      const outcome = current.value;
      if (outcome?.kind === 'succeeded' || outcome?.kind === 'failed') break;
      if (outcome?.kind === 'error') throw outcome.err;
      if (outcome?.kind === 'gone') {
        say(
          `Temporal at ${conn.temporalAddress} no longer knows run ${runId} (was its data deleted?); its last recorded state is in \`judgeflow status ${runId}\``,
        );
        return EXIT.lostContact;
      }
      if (outcome?.kind === 'lost') {
        if (lostSince === undefined) {
          lostSince = Date.now();
          if (tty && last) last = '';
          say(
            `lost contact with Temporal at ${conn.temporalAddress} (${firstLine(outcome.err)}); the run goes on without this terminal. ` +
              `Reconnecting for up to ${Math.round(maxReconnectMs / 1000)} s (JUDGEFLOW_RECONNECT_TIMEOUT_S); if the local stack went down, \`judgeflow up\` brings it back.`,
          );
        }
        if (Date.now() - lostSince >= maxReconnectMs) {
          say(
            `gave up reconnecting to Temporal at ${conn.temporalAddress} after ${Math.round((Date.now() - lostSince) / 1000)} s; run ${runId} was not stopped and goes on when Temporal is back. ` +
              `Follow it again: ${reattachCommand(runId)}`,
          );
          return EXIT.lostContact;
        }
        await pause(Math.min(10_000, 500 * 2 ** attempt, Math.max(0, lostSince + maxReconnectMs - Date.now())));
        attempt++;
        if (interrupted) continue;
        try {
          await conn.client.withDeadline(Date.now() + 5_000, () => handle.describe());
        } catch (err) {
          if (isTemporalUnreachable(err)) continue;
          throw err;
        }
        say(`reconnected to Temporal at ${conn.temporalAddress} after ${Math.round((Date.now() - lostSince) / 1000)} s; following run ${runId} again`);
        lostSince = undefined;
        attempt = 0;
        current = follow();
        continue;
      }

      await Promise.race([current.done, pause(1000)]);
      if (current.value || interrupted) continue;
      if (opts.taskQueues && Date.now() - lastPollerCheck > 30_000) {
        lastPollerCheck = Date.now();
        try {
          const empty = await conn.client.withDeadline(Date.now() + 5_000, () => queuesWithoutWorkers(conn, opts.taskQueues!));
          for (const q of empty) if (!warnedQueues.has(q)) say(`warning: ${noWorkerHint(conn, q)}`);
          warnedQueues.clear();
          for (const q of empty) warnedQueues.add(q);
        } catch (err) {
          if (!isTemporalUnreachable(err)) throw err;
        }
      }
      if (opts.json) continue;
      let progress: RunProgress;
      try {
        progress = await conn.client.withDeadline(Date.now() + 5_000, () => liveProgress(conn.client, runId));
      } catch (err) {
        // Temporal away: say so now (the result() long poll may retry for minutes before it gives up).
        if (isTemporalUnreachable(err)) {
          current = { value: { kind: 'lost', err }, done: Promise.resolve() };
          continue;
        }
        // The run ended between our check and the query: result() says how.
        if (err instanceof Error) continue;
        throw err;
      }
      if (tty) {
        const text = renderProgress(progress);
        if (text !== last) {
          if (last) io.errRaw(`\x1b[${last.split('\n').length}A\x1b[0J`);
          io.err(text);
          last = text;
        }
      } else {
        // Logs (CI, nohup): a line when a stage changes status, and progress every 15 s.
        const states = progress.stages.map((st) => `${st.id}=${st.status}`).join(' ');
        if (states !== lastStates || Date.now() - lastLine > 15_000) {
          const counts = progress.stages
            .filter((st) => st.total > 0)
            .map((st) => `${st.id} ${st.done}/${st.total}`)
            .join(', ');
          io.err(`[${new Date().toISOString().slice(11, 19)}] ${states}${counts ? ` (${counts})` : ''}`);
          lastStates = states;
          lastLine = Date.now();
        }
      }
    }
  } finally {
    stopListening();
    abandon.abort();
    // Clear the pending redraw pause, so it never holds the exit.
    wake();
  }
  const [final, run] = await Promise.all([progressFromDb(conn, runId), opts.json ? undefined : getRun(conn.db.db, runId)]);
  if (opts.json) {
    io.out(JSON.stringify(final));
  } else {
    if (tty && last) io.errRaw(`\x1b[${last.split('\n').length}A\x1b[0J`);
    io.out(renderProgress(final));
    if (run?.run.error) io.out(`error: ${run.run.error}`);
    const { printRunResults } = await resultsModule;
    await printRunResults(conn, runId, undefined, false, io);
  }
  return final.status === 'succeeded' ? EXIT.ok : EXIT.runFailed;
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 200);
}
