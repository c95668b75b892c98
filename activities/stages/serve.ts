/**
 * Activities of the `serve` stage: record the model's identity and the `endpoint` artifact, run
 * the server for as long as the stages after it need it (one long heartbeating activity: a killed
 * worker's server is started again elsewhere after the heartbeat timeout), and tell dependents
 * where it listens now. The server stops itself, in the same activity, once every stage after it
 * has finished or the run has ended (cancelled or failed included): no workflow has to be alive
 * for that, so it also happens when the run's workflow is gone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, openSync, closeSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Db } from '../../db/client.js';
import { modelFolderPath, type ServeParams } from '../../spec/kinds/serve.js';
import { PACKAGE_ROOT } from '../../spec/root.js';
import { freePort } from '../../runtime/net.js';
import { tailText } from '../train/backend.js';
import { ServedEndpointError } from '../inference/served.js';
import { pidAlive } from '../../runtime/daemon.js';

/** Worker variables the server sees (the spec's `env` adds to them). */
const BASE_ENV = ['PATH', 'HOME', 'LANG', 'TMPDIR', 'PYENV_VERSION'];
/** Stage statuses after which a stage no longer sends requests. */
const FINISHED = ['succeeded', 'failed', 'skipped', 'cancelled'];

export interface ServeDeps {
  db: Db;
  /** Where server logs go (`JUDGEFLOW_STATE_DIR`). */
  stateDir?: string;
  env?: NodeJS.ProcessEnv;
  /** How often the running server checks its process and its dependents, ms (default 2000). */
  watchMs?: number;
}

export interface PrepareServerInput {
  runId: string;
  stageId: string;
  params: ServeParams;
  /** The checkpoint artifact (`model: { from: train }`). */
  checkpointArtifactId?: number;
}
export interface PrepareServerOutput {
  /** The stage's `endpoint` artifact. */
  artifactId: number;
  modelPath: string;
  /** The model id requests name. */
  model: string;
  /** What the cache keys on: `checkpoint:<digest>` or `folder:<digest>`. */
  identity: string;
}
export interface RunServerInput {
  runId: string;
  stageId: string;
  params: ServeParams;
  modelPath: string;
  model: string;
}
export interface RunServerOutput {
  /** Why it stopped. */
  reason: string;
}
export interface ServerStatus {
  state: string;
  baseUrl: string | null;
  error: string | null;
  logTail: string;
}

const nowIso = `to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** sha256 over `<relative path>\0<sha256 of the file>` lines: a model folder's identity. */
async function folderDigest(dir: string): Promise<string> {
  const files: string[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) files.push(p);
    }
  };
  await walk(dir);
  files.sort();
  const lines: string[] = [];
  for (const f of files) lines.push(`${f.slice(dir.length + 1)}\u0000${await sha256File(f)}`);
  return createHash('sha256').update(lines.join('\n')).digest('hex');
}

function fill(arg: string, values: Record<string, string>): string {
  return arg.replace(/\{([a-z_]+)\}/g, (m, name: string) => values[name] ?? m);
}

/** The model ids a server lists at `<baseUrl>/models`, or undefined while it does not answer. */
async function listedModels(baseUrl: string): Promise<string[] | undefined> {
  try {
    const res = await fetch(`${baseUrl.replace(/\/+$/, '')}/models`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) return undefined;
    const body = (await res.json()) as { data?: { id?: unknown }[] };
    return (body.data ?? []).map((m) => String(m.id));
  } catch {
    return undefined; // not listening (yet): the caller polls
  }
}

export function createServeActivities(deps: ServeDeps) {
  const { db } = deps;
  const env = deps.env ?? process.env;
  const stateDir = resolve(deps.stateDir ?? env.JUDGEFLOW_STATE_DIR ?? '.judgeflow');
  const watchMs = deps.watchMs ?? 2000;

  const event = async (
    runId: string,
    stageId: string,
    state: string,
    message: string | null,
    extra: { baseUrl?: string | null; stopped?: boolean; error?: string } = {},
  ) => {
    await db.$client.query(
      `update servers set state = $3,
         events = events || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object('state', $3::text, 'at', ${nowIso}, 'message', $4::text))),
         base_url = case when $5::boolean then $6::text else base_url end,
         stopped_at = case when $7::boolean then now() else stopped_at end,
         error = coalesce($8::text, error),
         updated_at = now()
       where run_id = $1 and stage_id = $2`,
      [runId, stageId, state, message, extra.baseUrl !== undefined, extra.baseUrl ?? null, extra.stopped === true, extra.error ?? null],
    );
  };

  /** Why the server should stop now (every stage after it finished, or the run ended), or undefined. */
  const stopReason = async (runId: string, stageId: string): Promise<string | undefined> => {
    const rows = (
      await db.$client.query<{ run_status: string; stage_id: string; status: string; needs: string[] }>(
        'select r.status as run_status, s.stage_id, s.status, s.needs from runs r join stages s on s.run_id = r.id where r.id = $1',
        [runId],
      )
    ).rows;
    if (rows.length === 0) return `run ${runId} is gone`;
    const runStatus = rows[0]!.run_status;
    if (['succeeded', 'failed', 'cancelled'].includes(runStatus)) return `the run ${runStatus}`;
    const after = new Set<string>([stageId]);
    for (let grew = true; grew;) {
      grew = false;
      for (const r of rows) {
        if (!after.has(r.stage_id) && r.needs.some((n) => after.has(n))) {
          after.add(r.stage_id);
          grew = true;
        }
      }
    }
    after.delete(stageId);
    const open = rows.filter((r) => after.has(r.stage_id) && !FINISHED.includes(r.status));
    if (open.length > 0) return undefined;
    return after.size === 0 ? 'no stage needs it' : `every stage after it finished (${[...after].sort().join(', ')})`;
  };

  return {
    /** The model's folder and identity, the `endpoint` artifact (parent: the checkpoint), the server row. */
    async prepareServer({ runId, stageId, params, checkpointArtifactId }: PrepareServerInput): Promise<PrepareServerOutput> {
      let modelPath: string;
      let identity: string;
      if (checkpointArtifactId !== undefined) {
        const art = (
          await db.$client.query<{ kind: string; source: string | null; content_hash: string | null; sealed: boolean }>(
            'select kind, source, content_hash, sealed_at is not null as sealed from artifacts where id = $1',
            [checkpointArtifactId],
          )
        ).rows[0];
        if (!art || art.kind !== 'checkpoint' || !art.sealed) {
          throw ApplicationFailure.nonRetryable(`artifact ${checkpointArtifactId} is not a sealed checkpoint`, 'ServeError');
        }
        if (!art.source?.startsWith('file://')) {
          throw ApplicationFailure.nonRetryable(
            `checkpoint ${checkpointArtifactId} (${art.source ?? 'no URI'}) is not a folder: a hosted fine-tune is already an endpoint (put it under endpoints:)`,
            'ServeError',
          );
        }
        modelPath = fileURLToPath(art.source);
        identity = `checkpoint:${art.content_hash}`;
      } else if ('path' in params.model) {
        modelPath = modelFolderPath(params.model.path);
        if (!existsSync(modelPath) || !statSync(modelPath).isDirectory()) {
          throw ApplicationFailure.nonRetryable(`stage ${stageId}: with.model.path: no folder ${modelPath} on worker ${hostname()}`, 'ServeError');
        }
        identity = `folder:${await folderDigest(modelPath)}`;
      } else {
        throw ApplicationFailure.nonRetryable(`stage ${stageId}: the checkpoint was not resolved`, 'ServeError');
      }
      const model = params.served_model ?? modelPath;
      const summary = { model, identity, model_path: modelPath, ...(params.url ? { url: params.url } : {}) };
      const artifactId = (
        await db.$client.query<{ id: number }>(
          `insert into artifacts (kind, name, run_id, stage_id, content_hash, rows, summary, sealed_at)
           values ('endpoint', 'endpoint', $1, $2, $3, 0, $4, now())
           on conflict (run_id, stage_id, name) do update set content_hash = excluded.content_hash, summary = excluded.summary, sealed_at = now()
           returning id`,
          [runId, stageId, identity, JSON.stringify(summary)],
        )
      ).rows[0]!.id;
      if (checkpointArtifactId !== undefined) {
        await db.$client.query('insert into artifact_parents (artifact_id, parent_id) values ($1, $2) on conflict do nothing', [
          artifactId,
          checkpointArtifactId,
        ]);
      }
      await db.$client.query(
        `insert into servers (run_id, stage_id, artifact_id, state, model, identity, events)
         values ($1, $2, $3, 'starting', $4, $5, jsonb_build_array(jsonb_build_object('state', 'starting', 'at', ${nowIso})))
         on conflict (run_id, stage_id) do update set artifact_id = excluded.artifact_id, model = excluded.model, identity = excluded.identity,
           state = 'starting', error = null, stopped_at = null, events = servers.events || excluded.events, updated_at = now()`,
        [runId, stageId, artifactId, model, identity],
      );
      return { artifactId, modelPath, model, identity };
    },

    /** A server the user runs: it must list the model at /v1/models. */
    async checkExternalServer({ runId, stageId, params, modelPath, model }: RunServerInput): Promise<void> {
      const baseUrl = fill(params.url!, { model: modelPath }).replace(/\/+$/, '');
      const listed = await listedModels(baseUrl);
      if (listed === undefined) throw new ServedEndpointError(`stage ${stageId}: nothing answers at ${baseUrl}/models`);
      if (!listed.includes(model)) {
        throw ApplicationFailure.nonRetryable(
          `stage ${stageId}: ${baseUrl}/models lists ${listed.join(', ') || 'no model'}, not ${model} (set with.served_model to the id it lists)`,
          'ServeError',
        );
      }
      await event(runId, stageId, 'external', baseUrl, { baseUrl });
    },

    /**
     * Starts the server and keeps it until it is no longer needed; one activity for its whole life.
     * A later attempt (its worker died) first kills the previous attempt's process when it runs on
     * this host, then starts a new one on a new port.
     */
    async runServer({ runId, stageId, params, modelPath, model }: RunServerInput): Promise<RunServerOutput> {
      const ctx = Context.current();
      const host = hostname();
      const prev = (
        await db.$client.query<{ pid: number | null; host: string | null; attempt: number }>(
          'select pid, host, attempt from servers where run_id = $1 and stage_id = $2',
          [runId, stageId],
        )
      ).rows[0];
      if (!prev) throw ApplicationFailure.nonRetryable(`stage ${stageId}: no server record (prepareServer did not run)`, 'ServeError');
      // A previous start whose worker died: its process (on this host) is stopped first.
      let killed = '';
      if (prev.attempt > 0 && prev.pid && prev.host === host && pidAlive(prev.pid)) {
        try {
          process.kill(-prev.pid, 'SIGKILL');
        } catch {
          process.kill(prev.pid, 'SIGKILL');
        }
        killed = ` (killed its process ${prev.pid})`;
      }
      const early = prev.attempt > 0 ? await stopReason(runId, stageId) : undefined;
      if (early !== undefined) {
        await event(runId, stageId, 'stopped', `not restarted: ${early}${killed}`, { stopped: true });
        return { reason: early };
      }
      if (prev.attempt > 0) await event(runId, stageId, 'restarting', `start ${prev.attempt + 1}: the previous server's worker stopped heartbeating${killed}`);

      const port = await freePort();
      const argv = params.command.map((a) => fill(a, { python: params.python, model: modelPath, host: params.host, port: String(port) }));
      const dir = join(stateDir, 'serve', runId, stageId);
      await mkdir(dir, { recursive: true });
      const logPath = join(dir, `server-${prev.attempt + 1}.log`);
      const fd = openSync(logPath, 'a');
      const childEnv: Record<string, string> = {};
      for (const name of BASE_ENV) if (env[name] !== undefined) childEnv[name] = env[name]!;
      Object.assign(childEnv, params.env);
      let child: ChildProcess;
      try {
        // Its own process group: stopping it stops whatever it started.
        child = spawn(argv[0]!, argv.slice(1), { cwd: PACKAGE_ROOT, env: childEnv, detached: true, stdio: ['ignore', fd, fd] });
      } finally {
        closeSync(fd);
      }
      let exit: string | undefined;
      child.once('exit', (code, signal) => (exit = signal ? `signal ${signal}` : `exit code ${code}`));
      const spawned = await new Promise<Error | undefined>((res) => {
        child.once('spawn', () => res(undefined));
        child.once('error', (err) => res(err));
      });
      if (spawned) throw ApplicationFailure.nonRetryable(`stage ${stageId}: cannot start ${argv[0]}: ${spawned.message}`, 'ServeError');
      const pid = child.pid!;
      const baseUrl = `http://${params.host}:${port}/v1`;
      await db.$client.query(
        `update servers set pid = $3, host = $4, port = $5, attempt = attempt + 1, command = $6, log_path = $7, base_url = null, updated_at = now()
         where run_id = $1 and stage_id = $2`,
        [runId, stageId, pid, host, port, JSON.stringify(argv), logPath],
      );
      const logTail = () => {
        try {
          return tailText(readFileSync(logPath, 'utf8'), 4000);
        } catch {
          return '';
        }
      };

      const stop = async (state: 'stopped' | 'failed', reason: string) => {
        if (exit === undefined) {
          const gone = new Promise<void>((res) => child.once('exit', () => res()));
          try {
            process.kill(-pid, 'SIGTERM');
          } catch {
            child.kill('SIGTERM');
          }
          const timer = setTimeout(() => {
            try {
              process.kill(-pid, 'SIGKILL');
            } catch {
              child.kill('SIGKILL');
            }
          }, 15_000);
          await gone;
          clearTimeout(timer);
        }
        await db.$client.query('update servers set log_tail = $3 where run_id = $1 and stage_id = $2', [runId, stageId, logTail()]);
        await event(runId, stageId, state, reason, { stopped: true, ...(state === 'failed' ? { error: reason } : {}) });
      };
      const cancelled = () =>
        ctx.cancelled.then(
          () => new Error('cancelled'),
          (err: unknown) => err,
        );
      const sleep = (ms: number) =>
        new Promise<void>((res) => {
          const wake = () => {
            clearTimeout(t);
            res();
          };
          const t = setTimeout(() => {
            ctx.cancellationSignal.removeEventListener('abort', wake);
            res();
          }, ms);
          ctx.cancellationSignal.addEventListener('abort', wake, { once: true });
        });

      try {
        // Started: wait until it lists the model.
        const deadline = Date.now() + params.startup_timeout_s * 1000;
        for (;;) {
          ctx.heartbeat();
          if (ctx.cancellationSignal.aborted) throw await cancelled();
          if (exit !== undefined) {
            await db.$client.query('update servers set log_tail = $3 where run_id = $1 and stage_id = $2', [runId, stageId, logTail()]);
            throw new ServedEndpointError(`the server (${argv.join(' ')}) ended with ${exit} before listing ${model}:\n${logTail()}`);
          }
          const listed = await listedModels(baseUrl);
          if (listed?.includes(model)) break;
          if (listed !== undefined && listed.length > 0 && !params.served_model && Date.now() > deadline) break;
          if (Date.now() > deadline) {
            await stop('failed', `did not list ${model} at ${baseUrl}/models within startup_timeout_s = ${params.startup_timeout_s}`);
            throw ApplicationFailure.nonRetryable(
              `stage ${stageId}: the server did not list ${model} at ${baseUrl}/models within startup_timeout_s = ${params.startup_timeout_s}${listed ? ` (it lists ${listed.join(', ')})` : ''}:\n${logTail()}`,
              'ServeError',
            );
          }
          await sleep(500);
        }
        await event(runId, stageId, 'ready', baseUrl, { baseUrl });

        // Serving: until nothing needs it, the activity is cancelled, or the process dies.
        for (;;) {
          ctx.heartbeat();
          await sleep(watchMs);
          if (ctx.cancellationSignal.aborted) throw await cancelled();
          if (exit !== undefined) {
            await db.$client.query('update servers set log_tail = $3, base_url = null where run_id = $1 and stage_id = $2', [runId, stageId, logTail()]);
            await event(runId, stageId, 'restarting', `the server ended with ${exit}`);
            throw new ServedEndpointError(`the server of stage ${stageId} ended with ${exit}:\n${logTail()}`);
          }
          const reason = await stopReason(runId, stageId);
          if (reason !== undefined) {
            await stop('stopped', reason);
            return { reason };
          }
        }
      } catch (err) {
        if (ctx.cancellationSignal.aborted) {
          await stop('stopped', 'cancelled');
        } else if (exit === undefined) {
          await stop('failed', (err as Error).message);
        }
        throw err;
      }
    },

    /** Records that the server could not be kept up (its activity ran out of attempts). */
    async serverFailed({ runId, stageId, error }: { runId: string; stageId: string; error: string }): Promise<void> {
      await event(runId, stageId, 'failed', error, { stopped: true, error, baseUrl: null });
    },

    /** Where the server is: the serve stage waits for `ready`. */
    async serverStatus({ runId, stageId }: { runId: string; stageId: string }): Promise<ServerStatus> {
      const row = (
        await db.$client.query<{ state: string; base_url: string | null; error: string | null; log_tail: string }>(
          'select state, base_url, error, log_tail from servers where run_id = $1 and stage_id = $2',
          [runId, stageId],
        )
      ).rows[0];
      return row
        ? { state: row.state, baseUrl: row.base_url, error: row.error, logTail: row.log_tail }
        : { state: 'missing', baseUrl: null, error: null, logTail: '' };
    },
  };
}

export type ServeActivities = ReturnType<typeof createServeActivities>;
