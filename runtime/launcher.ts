/**
 * The resident launcher: a worker process also takes `judgeflow run` commands over a Unix socket
 * (runtime/launcher-client.ts), so a short job does not pay, at every command, for loading the
 * Temporal client, the spec checker and Postgres code and for connecting to both servers: the
 * worker has them loaded and connected. The command runs here exactly as in the CLI (the same
 * `runCommand`), its output streamed to the client's terminal and its exit code returned.
 *
 * What it does not take is handed back before anything is printed, started or written, and the
 * client runs the command itself: another build of judgeflow; a spec that starts a simulator or
 * is an ablation group; a spec naming an API key (api_key_env) that is not the same in the
 * client's environment as in this worker's (compared by hash; values never travel).
 *
 * The socket is in a folder only this user can enter (mode 0700), named by the servers and task
 * queue the CLI would use (launcherSocketPath), so `run` finds the worker of its own stack.
 */
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createServer, connect as connectSocket, type Server, type Socket } from 'node:net';
import { Client, Connection } from '@temporalio/client';
import type { NativeConnection } from '@temporalio/worker';
import type { Connected } from '../cli/connect.js';
import type { Io } from '../cli/io.js';
import { openDb } from '../db/client.js';
import { loadRuntimeConfig } from './config.js';
import {
  LAUNCHER_PROTOCOL,
  launcherDir,
  launcherDirIsPrivate,
  launcherIdentity,
  launcherSocketPath,
  readMessages,
  sha256,
  type LaunchReply,
  type LaunchRequest,
} from './launcher-client.js';

export interface LauncherOptions {
  socketPath: string;
  /** This process's build id (dist/build.json's builtAt); a client of another build is handed back. */
  build: string;
  databaseUrl: string;
  temporalAddress: string;
  namespace: string;
  taskQueue: string;
  /**
   * The connection of the worker polling `taskQueue` in this process: a run on that queue is
   * started through it with eager start (its first workflow task handed to this worker in the
   * start's reply, not through a poll).
   */
  workerConnection?: NativeConnection;
  log: (line: string) => void;
}

export interface Launcher {
  socketPath: string;
  close(): Promise<void>;
}

/** Is something answering on this socket path? */
function answering(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connectSocket(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Listens on `socketPath` unless another live launcher already does (several workers of one
 * stack: the first serves). Returns undefined when it does not listen.
 */
export async function startLauncher(opts: LauncherOptions): Promise<Launcher | undefined> {
  const dir = launcherDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (statSync(dir).uid === process.getuid?.()) chmodSync(dir, 0o700);
  if (!launcherDirIsPrivate(dir)) throw new Error(`${dir} is not this user's own folder (mode 0700); remove it`);
  if (await answering(opts.socketPath)) {
    opts.log(`launcher: another worker serves ${opts.socketPath}`);
    return undefined;
  }
  rmSync(opts.socketPath, { force: true }); // a stale one, from a worker that was killed

  const cfg = { ...loadRuntimeConfig(process.env), databaseUrl: opts.databaseUrl, temporalAddress: opts.temporalAddress };
  // (Kept open between commands, as the worker's: a command an hour later does not connect again.)
  const db = openDb(opts.databaseUrl, { max: 4, min: 2 });
  // Connected and the CLI's code loaded now, while nobody waits. A failure (Temporal not up yet)
  // hands commands back until a later command finds it up.
  const prepare = async () => {
    const connection = await Connection.connect({ address: opts.temporalAddress, connectTimeout: '5 seconds' });
    // Eager start only where the run's queue is this worker's (a worker of --task-queue gpu-a may
    // serve the launches of the default queue).
    const eager = opts.workerConnection && cfg.taskQueue === opts.taskQueue ? opts.workerConnection : undefined;
    const conn: Connected = {
      cfg,
      databaseUrl: opts.databaseUrl,
      temporalAddress: opts.temporalAddress,
      db,
      client: new Client({ connection, namespace: opts.namespace }),
      eagerStartClient: eager && new Client({ connection: eager, namespace: opts.namespace }),
      close: () => connection.close(),
    };
    await import('../spec/builtin.js');
    const run = await import('../cli/commands/run.js');
    const errors = await import('../cli/errors.js');
    await import('../cli/commands/results.js');
    return { conn, run, errors };
  };
  let ready: ReturnType<typeof prepare> | undefined;
  const whenReady = () => {
    const current = (ready ??= prepare());
    current.catch((err: unknown) => {
      if (ready === current) ready = undefined;
      opts.log(`launcher: not ready (${(err as Error).message}); commands run in their own process until it is`);
    });
    return current;
  };
  void whenReady().catch(() => {});

  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    void serve(socket);
  });

  async function serve(socket: Socket): Promise<void> {
    const send = (msg: LaunchReply) => {
      if (!socket.destroyed) socket.write(`${JSON.stringify(msg)}\n`);
    };
    const interrupts = new Set<() => void>();
    let interrupted = false;
    const interrupt = () => {
      interrupted = true;
      for (const fn of [...interrupts]) fn();
    };
    socket.once('close', interrupt);
    socket.once('error', () => {});
    const first = new Promise<LaunchRequest | undefined>((resolve) => {
      readMessages(socket, (msg) => {
        if ((msg as { interrupt?: boolean } | undefined)?.interrupt) interrupt();
        else resolve(msg as LaunchRequest | undefined);
      });
      socket.once('close', () => resolve(undefined));
    });
    const req = await first;
    if (!req) return void socket.destroy();
    if (req.v !== LAUNCHER_PROTOCOL || req.build !== opts.build || !Array.isArray(req.argv) || req.argv[0] !== 'run') {
      send({ fallback: 'another build of judgeflow' });
      return void socket.end();
    }
    send({ ack: 1 });
    let loaded;
    try {
      loaded = await whenReady();
    } catch {
      send({ fallback: 'the launcher cannot reach Postgres or Temporal' });
      return void socket.end();
    }
    // Both servers answering, or the client runs the command itself: its `run` brings a local
    // stack's stopped services back up (ensureStack), which this worker does not do. Asked while
    // the spec is loaded and checked (which touches neither): handOver waits for the answer.
    const { conn } = loaded;
    let timer: NodeJS.Timeout | undefined;
    const reachable = Promise.race([
      Promise.all([conn.db.pool.query('select 1'), conn.client.withDeadline(Date.now() + 2_000, () => conn.client.workflowService.getSystemInfo({}))]),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('no answer in 2 s')), 2_000))),
    ])
      .then(
        () => true,
        () => false,
      )
      .finally(() => clearTimeout(timer));
    const io: Io = {
      out: (o) => send({ o }),
      err: (e) => send({ e }),
      errRaw: (r) => send({ r }),
      errTTY: Boolean(req.errTTY),
      env: { ...req.env },
      cwd: req.cwd,
      onInterrupt(fn) {
        if (interrupted) queueMicrotask(fn);
        interrupts.add(fn);
        return () => interrupts.delete(fn);
      },
    };
    const handOver = async (spec: { spec: { simulator?: unknown; ablations?: unknown } }, keys: string[]): Promise<string | undefined> => {
      if (!(await reachable)) return 'the launcher cannot reach Postgres or Temporal';
      // The user's Ctrl-C (or a killed client) before the launch: nothing is started.
      if (interrupted) return 'interrupted';
      if (spec.spec.simulator) return 'the spec starts a simulator';
      if (spec.spec.ablations) return 'an ablation group';
      for (const k of keys) {
        // (Empty counts as unset, as the stack's worker check has it.)
        const mine = process.env[k];
        if (!mine || req.keys?.[k] !== sha256(mine)) return `${k} is not the same here`;
      }
      return undefined;
    };
    const started = Date.now();
    let how = '';
    const onLaunched = (l: { eagerlyStarted?: boolean }) => void (how = l.eagerlyStarted ? ' (started eagerly)' : '');
    let code: number;
    try {
      code = await loaded.run.runCommand(req.argv.slice(1), { io, connection: loaded.conn, handOver, onLaunched });
    } catch (err) {
      if (err instanceof loaded.run.HandOver) {
        if (interrupted) {
          io.err('judgeflow run: interrupted before the launch; nothing was started');
          send({ exit: loaded.errors.EXIT.interrupted });
        } else send({ fallback: err.message });
        return void socket.end();
      }
      code = loaded.errors.commandErrorExit('run', err, io);
    }
    opts.log(`launcher: ${JSON.stringify(req.argv)} in ${req.cwd}: exit ${code} after ${Date.now() - started} ms${how}`);
    send({ exit: code });
    socket.end();
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(opts.socketPath, 0o600);
  opts.log(`launcher: serving \`judgeflow run\` on ${opts.socketPath}`);
  return {
    socketPath: opts.socketPath,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      rmSync(opts.socketPath, { force: true });
      await ready?.then(({ conn }) => conn.close()).catch(() => {});
      await db.close();
    },
  };
}

/** The build id of the compiled code this process runs (dist/build.json beside the workflow bundle), or undefined from the sources. */
export function compiledBuildId(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const bundle = env.JUDGEFLOW_WORKFLOW_BUNDLE;
  if (!bundle) return undefined;
  try {
    return (JSON.parse(readFileSync(join(dirname(bundle), 'build.json'), 'utf8')) as { builtAt?: string }).builtAt;
  } catch {
    return undefined;
  }
}

/**
 * Starts the launcher of a worker process, when it runs compiled code and JUDGEFLOW_LAUNCHER is
 * not `off`: on JUDGEFLOW_LAUNCHER_SOCKET (set by the local stack) or the socket the CLI would
 * look for with this process's environment and working directory.
 */
export async function startWorkerLauncher(cfg: {
  databaseUrl: string;
  temporalAddress: string;
  namespace: string;
  taskQueue: string;
  workerConnection?: NativeConnection;
  log: (line: string) => void;
}): Promise<Launcher | undefined> {
  const build = compiledBuildId();
  if (process.env.JUDGEFLOW_LAUNCHER === 'off' || build === undefined) return undefined;
  const socketPath = process.env.JUDGEFLOW_LAUNCHER_SOCKET || launcherSocketPath(launcherIdentity(process.env, process.cwd()));
  try {
    return await startLauncher({ ...cfg, socketPath, build });
  } catch (err) {
    cfg.log(`launcher: not started (${(err as Error).message}); \`judgeflow run\` starts in its own process`);
    return undefined;
  }
}
