/**
 * Keeps the embedded worker alive: `node runtime/supervisor.(ts|js) -- <worker command…>`.
 *
 * `up` starts this detached as the stack's `worker` service (its pid is the recorded one); it runs
 * the worker as its child, in its process group, with its environment and log. Until it is armed,
 * a worker that exits ends the supervisor with the same status, so `up` reports a worker that
 * cannot start (bad configuration) instead of retrying it forever. `up` arms it with SIGUSR2 once
 * the worker polls its task queue; from then on a worker that dies (kill -9, a crash, the OOM
 * killer) is started again after 1 s, 2 s, 4 s … up to 30 s (back to 1 s after a minute of uptime).
 *
 * SIGTERM / SIGINT / SIGHUP stop it: the signal is passed to the worker once (a second one would
 * cut the Temporal worker's graceful shutdown short), the supervisor exits when the worker has.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';

const sep = process.argv.indexOf('--');
const command = sep >= 0 ? process.argv.slice(sep + 1) : [];
if (command.length === 0) {
  console.error('supervisor: usage: supervisor -- <worker command…>');
  process.exit(2);
}

const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
const STABLE_MS = 60_000;

let armed = false;
let stopping: NodeJS.Signals | undefined;
let child: ChildProcess | undefined;
let backoff = BACKOFF_MIN_MS;
let restartTimer: NodeJS.Timeout | undefined;

const log = (line: string) => console.error(`[${new Date().toISOString()}] supervisor (pid ${process.pid}): ${line}`);

function start(): void {
  const [file, ...args] = command as [string, ...string[]];
  const startedAt = Date.now();
  const c = spawn(file, args, { stdio: 'inherit', env: process.env });
  child = c;
  c.on('error', (err) => log(`cannot start the worker: ${err.message}`));
  c.once('exit', (code, signal) => {
    child = undefined;
    const how = signal ? `killed by ${signal}` : `exit code ${code}`;
    if (stopping) {
      log(`worker pid ${c.pid} stopped (${how})`);
      process.exit(code ?? 0);
    }
    if (!armed) {
      // Not yet seen polling: `up` is waiting for it and reports this status with the log tail.
      log(`worker pid ${c.pid} exited before it was ready (${how}); not restarting`);
      process.exit(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
    }
    const uptime = Date.now() - startedAt;
    if (uptime >= STABLE_MS) backoff = BACKOFF_MIN_MS;
    log(`worker pid ${c.pid} exited (${how}) after ${Math.round(uptime / 1000)} s; restarting in ${backoff / 1000} s`);
    restartTimer = setTimeout(() => {
      restartTimer = undefined;
      if (!stopping) start();
    }, backoff);
    backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
  });
  log(`worker started, pid ${c.pid}`);
}

for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = sig;
    if (restartTimer) clearTimeout(restartTimer);
    if (!child) process.exit(0);
    child.kill(sig);
  });
}
process.on('SIGUSR2', () => {
  if (!armed) log('armed: the worker polls its task queue; it is restarted if it dies');
  armed = true;
});

start();
