/**
 * The client half of the resident launcher (runtime/launcher.ts): `judgeflow run` hands its
 * command to the worker already running against the same servers, which has Temporal, Postgres and
 * the CLI's code loaded, instead of loading them itself (most of a short job's start).
 *
 * Node built-ins only: bin/judgeflow.mjs imports this compiled file before anything else loads.
 * Any doubt (no socket, another build, a spec the launcher does not take, the launcher gone before
 * it answered) returns undefined, and the command runs in this process as it always did.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** Protocol version of the lines below; a launcher of another version is not used. */
export const LAUNCHER_PROTOCOL = 1;

/** The first line a client sends. */
export interface LaunchRequest {
  v: number;
  /** Build id (dist/build.json's builtAt): a launcher of another build is not used. */
  build: string;
  argv: string[];
  cwd: string;
  errTTY: boolean;
  /** Variables the command reads as plain settings (not servers, not keys). */
  env: Record<string, string>;
  /** sha256 of every variable's value, by name: the launcher compares the keys a spec names with its own (values never travel). */
  keys: Record<string, string>;
}

/** Lines the launcher sends: output, then the exit code, or a hand-over before anything happened. */
export type LaunchReply = { ack: 1 } | { o: string } | { e: string } | { r: string } | { exit: number } | { fallback: string };

/** How long a launcher has to acknowledge a command (a stuck worker) before the CLI runs it itself. */
export const ACK_TIMEOUT_MS = 5_000;

/** Plain settings a `run` reads from its environment, passed to the launcher as they are. */
export const PASSED_ENV = ['JUDGEFLOW_RECONNECT_TIMEOUT_S'];

export const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * Calls `onMessage` with each newline-terminated JSON message the socket receives (both sides
 * speak this way); a line that is not JSON ends the conversation (`onMessage(undefined)`, and
 * nothing after it is read).
 */
export function readMessages(socket: Socket, onMessage: (msg: unknown) => void): void {
  let ended = false;
  let buffer = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    if (ended) return;
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        ended = true;
        return onMessage(undefined);
      }
      onMessage(msg);
    }
  });
}

/** What a launcher serves: the servers and task queue a CLI would use (unset server: the local stack's). */
export interface LauncherIdentity {
  stateDir: string;
  databaseUrl?: string;
  temporalAddress?: string;
  namespace: string;
  taskQueue: string;
}

/** The identity a CLI with this environment and working directory would use (runtime/config.ts's defaults). */
export function launcherIdentity(env: NodeJS.ProcessEnv, cwd: string): LauncherIdentity {
  return {
    stateDir: resolve(cwd, env.JUDGEFLOW_STATE_DIR || '.judgeflow'),
    databaseUrl: env.DATABASE_URL || undefined,
    temporalAddress: env.TEMPORAL_ADDRESS || undefined,
    namespace: env.TEMPORAL_NAMESPACE || 'default',
    taskQueue: env.JUDGEFLOW_TASK_QUEUE || 'judgeflow',
  };
}

/**
 * The socket of the launcher serving that identity, in a folder of this user's under the system
 * temp dir (a socket path must stay under ~100 bytes).
 */
export function launcherSocketPath(id: LauncherIdentity): string {
  const key = [id.stateDir, id.databaseUrl ?? '', id.temporalAddress ?? '', id.namespace, id.taskQueue];
  return join(launcherDir(), `${sha256(JSON.stringify(key)).slice(0, 24)}.sock`);
}

/**
 * Whether the launchers' folder is this user's own and closed to others: a folder someone else
 * made (or opened) is not trusted with a command, and the command runs in the CLI's process.
 */
export function launcherDirIsPrivate(dir = launcherDir()): boolean {
  try {
    const st = statSync(dir);
    return st.isDirectory() && (process.getuid === undefined || st.uid === process.getuid()) && (st.mode & 0o077) === 0;
  } catch {
    return false;
  }
}

export function launcherDir(): string {
  return join(tmpdir(), `judgeflow-launchers-${process.getuid?.() ?? 'user'}`);
}

/**
 * Runs `argv` (a `run` command) through the launcher, printing its output here; resolves to the
 * exit code, or undefined when this process must run the command itself.
 */
export function viaLauncher(argv: string[], build: string, env: NodeJS.ProcessEnv = process.env): Promise<number | undefined> {
  if (env.JUDGEFLOW_LAUNCHER === 'off' || argv[0] !== 'run' || argv.includes('--help') || argv.includes('-h')) return Promise.resolve(undefined);
  if (!launcherDirIsPrivate()) return Promise.resolve(undefined);
  const path = launcherSocketPath(launcherIdentity(env, process.cwd()));
  return new Promise((done) => {
    const socket = connect(path);
    let settled = false;
    let spoke = false;
    let ackTimer: NodeJS.Timeout | undefined;
    const finish = (code: number | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(ackTimer);
      process.off('SIGINT', onSigint);
      socket.destroy();
      done(code);
    };
    // Ctrl-C: the launcher stops following (the run goes on) and says so; its exit code follows.
    let interrupts = 0;
    const onSigint = () => {
      // A second Ctrl-C does not wait for the launcher's answer.
      if (!socket.writable || ++interrupts > 1) finish(130);
      else socket.write(`${JSON.stringify({ interrupt: true })}\n`);
    };
    socket.once('error', () => finish(undefined));
    socket.once('connect', () => {
      process.on('SIGINT', onSigint);
      ackTimer = setTimeout(() => finish(undefined), ACK_TIMEOUT_MS);
      const keys: Record<string, string> = {};
      for (const [k, v] of Object.entries(env)) if (v !== undefined) keys[k] = sha256(v);
      const plain: Record<string, string> = {};
      for (const k of PASSED_ENV) if (env[k] !== undefined) plain[k] = env[k]!;
      const req: LaunchRequest = { v: LAUNCHER_PROTOCOL, build, argv, cwd: process.cwd(), errTTY: Boolean(process.stderr.isTTY), env: plain, keys };
      socket.write(`${JSON.stringify(req)}\n`);
    });
    readMessages(socket, (raw) => {
      const msg = raw as LaunchReply | undefined;
      clearTimeout(ackTimer);
      if (msg === undefined || 'fallback' in msg) return void finish(undefined);
      if ('ack' in msg) return;
      if ('exit' in msg) return void finish(msg.exit);
      if ('o' in msg) process.stdout.write(`${msg.o}\n`);
      else if ('e' in msg) process.stderr.write(`${msg.e}\n`);
      else if ('r' in msg) process.stderr.write(msg.r);
      spoke = true;
    });
    // The launcher gone mid-command (its worker stopped or was killed): this process runs the
    // command again itself, which attaches to the run already started (a run's id is its spec's).
    socket.once('close', () => {
      if (!settled && spoke) process.stderr.write('judgeflow: the worker serving this command went away; following the run from here\n');
      finish(undefined);
    });
  });
}
