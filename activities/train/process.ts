/**
 * The `process` backend: the trainer runs as a local process, detached from the worker (it
 * survives the worker's crash). Each job is a folder `<dir>/<key>/` holding job.json, the runner's
 * pid, the log and, once it ended, the exit code: the folder list is the backend's job list, and
 * creating the folder (atomic) is the submission, so a key is never started twice.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tailText, TrainBackendError, type SubmitResult, type TrainBackend, type TrainJobSpec, type TrainJobStatus } from './backend.js';
import { pidAlive } from '../../runtime/daemon.js';

const RUNNER = join(dirname(fileURLToPath(import.meta.url)), 'process-runner.mjs');
/** A job folder without a pid this long after its creation never started: lost. */
const START_GRACE_MS = 30_000;

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export class ProcessBackend implements TrainBackend {
  readonly name = 'process';
  constructor(readonly dir: string) {}

  private jobDir(jobId: string): string {
    if (!/^[A-Za-z0-9._-]+$/.test(jobId)) throw new TrainBackendError(`process backend: bad job id "${jobId}"`);
    return join(this.dir, jobId);
  }

  /** Every job the backend has started (its folders). */
  async list(): Promise<string[]> {
    if (!existsSync(this.dir)) return [];
    return (await readdir(this.dir, { withFileTypes: true }))
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
  }

  async find(key: string): Promise<string | undefined> {
    return existsSync(this.jobDir(key)) ? key : undefined;
  }

  async submit(spec: TrainJobSpec): Promise<SubmitResult> {
    const dir = this.jobDir(spec.key);
    await mkdir(this.dir, { recursive: true });
    try {
      await mkdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return { jobId: spec.key, attached: true };
      throw err;
    }
    await writeFile(join(dir, 'job.json'), JSON.stringify({ key: spec.key, argv: spec.argv, cwd: spec.cwd, env: spec.env }));
    const runner = spawn(process.execPath, [RUNNER, dir], { detached: true, stdio: 'ignore', cwd: spec.cwd, env: {} });
    if (runner.pid === undefined) throw new TrainBackendError(`process backend: could not start the runner for ${spec.key}`);
    await writeFile(join(dir, 'pid'), `${runner.pid}\n`);
    runner.unref();
    return { jobId: spec.key, attached: false };
  }

  async status(jobId: string): Promise<TrainJobStatus> {
    const dir = this.jobDir(jobId);
    if (!existsSync(dir)) return { state: 'lost', message: `no job folder ${dir}` };
    const exit = await readOptional(join(dir, 'exit'));
    const cancelled = existsSync(join(dir, 'cancelled'));
    if (exit !== undefined) {
      const code = Number(exit.trim());
      if (cancelled) return { state: 'cancelled', exitCode: code };
      return code === 0 ? { state: 'succeeded', exitCode: 0 } : { state: 'failed', exitCode: code, message: `the trainer exited with code ${code}` };
    }
    const pid = await readOptional(join(dir, 'pid'));
    if (pid === undefined) {
      const age = Date.now() - (await stat(dir)).mtimeMs;
      return age > START_GRACE_MS ? { state: 'lost', message: 'the job never started (no pid)' } : { state: 'pending' };
    }
    if (pidAlive(Number(pid))) return { state: 'running' };
    // The runner writes exit before it ends: a dead runner without one was killed.
    return cancelled ? { state: 'cancelled' } : { state: 'lost', message: `runner ${pid.trim()} died without an exit code` };
  }

  async logs(jobId: string, maxBytes: number): Promise<string> {
    const path = join(this.jobDir(jobId), 'log');
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw err;
    }
    try {
      const { size } = await fh.stat();
      const start = Math.max(0, size - maxBytes);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      return tailText(buf.toString('utf8'), maxBytes);
    } finally {
      await fh.close();
    }
  }

  async cancel(jobId: string): Promise<void> {
    const dir = this.jobDir(jobId);
    if (!existsSync(dir) || existsSync(join(dir, 'exit'))) return;
    await writeFile(join(dir, 'cancelled'), `${new Date().toISOString()}\n`);
    const pid = await readOptional(join(dir, 'pid'));
    if (pid === undefined) return;
    // The runner leads its own process group: stop the trainer and anything it started.
    try {
      process.kill(-Number(pid), 'SIGTERM');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}
