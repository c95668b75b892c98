/**
 * The `slurm` backend: sbatch / squeue / scontrol / scancel, each behind an optional command
 * prefix (e.g. `ssh login-node`). The job name is the key: before submitting, `squeue --states=all`
 * looks it up (Slurm keeps finished jobs for MinJobAge, 300 s by default). The batch script comes
 * on stdin and holds only the quoted argv; environment values travel by name (`--export`), never
 * in a file.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { shellCommand } from './shell.js';
import { tailText, TrainBackendError, type SubmitResult, type TrainBackend, type TrainJobSpec, type TrainJobStatus } from './backend.js';

const STATES: Record<string, TrainJobStatus['state']> = {
  PENDING: 'pending',
  CONFIGURING: 'pending',
  REQUEUED: 'pending',
  RUNNING: 'running',
  COMPLETING: 'running',
  SUSPENDED: 'running',
  COMPLETED: 'succeeded',
  FAILED: 'failed',
  TIMEOUT: 'failed',
  OUT_OF_MEMORY: 'failed',
  NODE_FAIL: 'lost',
  BOOT_FAIL: 'failed',
  DEADLINE: 'failed',
  PREEMPTED: 'lost',
  CANCELLED: 'cancelled',
};

/** A Slurm command that could not run or failed transiently: retryable. */
export class SlurmUnavailableError extends Error {
  override readonly name = 'SlurmUnavailableError';
}

export interface SlurmOptions {
  prefix: string[];
  partition?: string;
  cpus?: number;
  mem?: string;
  time?: string;
}

export class SlurmBackend implements TrainBackend {
  readonly name = 'slurm';
  constructor(readonly opts: SlurmOptions) {}

  private run(argv: string[], input?: string, env?: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
    const full = [...this.opts.prefix, ...argv];
    return new Promise((resolvePromise, reject) => {
      const child = execFile(full[0]!, full.slice(1), { env: env ?? process.env, timeout: 60_000, maxBuffer: 8 << 20 }, (err, stdout, stderr) => {
        if (err && typeof (err as NodeJS.ErrnoException).code === 'string') {
          reject(new SlurmUnavailableError(`${full[0]}: ${err.message}`, { cause: err }));
          return;
        }
        resolvePromise({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      });
      if (input !== undefined) child.stdin?.end(input);
    });
  }

  async find(key: string): Promise<string | undefined> {
    const r = await this.run(['squeue', '--noheader', '--states=all', `--name=${key}`, '--format=%i']);
    if (r.code !== 0) throw new SlurmUnavailableError(`squeue: ${r.stderr.trim()}`);
    const ids = r.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    return ids.sort((a, b) => Number(a) - Number(b))[0];
  }

  /** Every job Slurm lists (ids), finished ones included while it keeps them. */
  async list(): Promise<string[]> {
    const r = await this.run(['squeue', '--noheader', '--states=all', '--format=%i %j']);
    if (r.code !== 0) throw new SlurmUnavailableError(`squeue: ${r.stderr.trim()}`);
    return r.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  }

  async submit(spec: TrainJobSpec): Promise<SubmitResult> {
    const existing = await this.find(spec.key);
    if (existing) return { jobId: existing, attached: true };
    const script = `#!/bin/sh\ncd ${shellCommand([spec.cwd])} || exit 1\nexec ${shellCommand(spec.argv)}\n`;
    const names = Object.keys(spec.env);
    const args = [
      'sbatch',
      '--parsable',
      `--job-name=${spec.key}`,
      `--output=${join(spec.outputDir, 'slurm.log')}`,
      `--export=${names.length > 0 ? names.join(',') : 'NONE'}`,
      ...(this.opts.partition ? [`--partition=${this.opts.partition}`] : []),
      ...(this.opts.cpus ? [`--cpus-per-task=${this.opts.cpus}`] : []),
      ...(this.opts.mem ? [`--mem=${this.opts.mem}`] : []),
      ...(this.opts.time ? [`--time=${this.opts.time}`] : []),
    ];
    const r = await this.run(args, script, { ...process.env, ...spec.env });
    if (r.code !== 0) throw new TrainBackendError(`sbatch refused job ${spec.key}: ${r.stderr.trim()}`);
    const jobId = r.stdout.trim().split(';')[0]!;
    if (!/^\d+$/.test(jobId)) throw new TrainBackendError(`sbatch printed no job id: ${r.stdout.trim()}`);
    return { jobId, attached: false };
  }

  async status(jobId: string): Promise<TrainJobStatus> {
    const r = await this.run(['scontrol', 'show', 'job', '--oneliner', jobId]);
    if (r.code !== 0) {
      if (/invalid job id/i.test(r.stderr)) return { state: 'lost', message: `Slurm no longer knows job ${jobId}` };
      throw new SlurmUnavailableError(`scontrol show job ${jobId}: ${r.stderr.trim()}`);
    }
    const field = (name: string) => new RegExp(`(?:^|\\s)${name}=(\\S+)`).exec(r.stdout)?.[1];
    const raw = field('JobState') ?? '';
    const state = STATES[raw];
    if (!state) throw new TrainBackendError(`Slurm job ${jobId}: unknown state ${raw}`);
    const exit = field('ExitCode');
    const exitCode = exit ? Number(exit.split(':')[0]) : undefined;
    const reason = field('Reason');
    return {
      state,
      ...(exitCode !== undefined && Number.isFinite(exitCode) ? { exitCode } : {}),
      ...(state === 'failed'
        ? { message: `Slurm job ${jobId} ${raw}${exitCode !== undefined ? ` (exit ${exitCode})` : ''}${reason && reason !== 'None' ? `: ${reason}` : ''}` }
        : {}),
    };
  }

  async logs(jobId: string, maxBytes: number): Promise<string> {
    const r = await this.run(['scontrol', 'show', 'job', '--oneliner', jobId]);
    const path = /(?:^|\s)StdOut=(\S+)/.exec(r.stdout)?.[1];
    if (r.code !== 0 || !path) return '';
    const t = await this.run(['tail', '-c', String(maxBytes), path]);
    return t.code === 0 ? tailText(t.stdout, maxBytes) : '';
  }

  async cancel(jobId: string): Promise<void> {
    const r = await this.run(['scancel', jobId]);
    if (r.code !== 0 && !/invalid job id/i.test(r.stderr)) throw new SlurmUnavailableError(`scancel ${jobId}: ${r.stderr.trim()}`);
  }
}
