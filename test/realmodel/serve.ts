/**
 * Starts `transformers serve` on a free port with SmolLM2-135M-Instruct (prepared by
 * scripts/prepare-smollm2.py). Loud when anything is missing: no skip.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../runtime/net.js';
import { REPO } from '../helpers/env.js';

export const SMOLLM2_DIR = process.env.JF_SMOLLM2_DIR ?? join(REPO, '.cache', 'models', 'smollm2-135m-instruct');

export interface ServedModel {
  /** The OpenAI base URL, ending in /v1. */
  baseUrl: string;
  /** The model id the server lists (the folder's path). */
  model: string;
  close(): Promise<void>;
}

function transformersCli(): string {
  const explicit = process.env.JF_TRANSFORMERS_CLI;
  if (explicit) return explicit;
  let scripts: string;
  try {
    scripts = execFileSync('python3', ['-c', 'import sysconfig; print(sysconfig.get_path("scripts"))'], { encoding: 'utf8' }).trim();
  } catch (err) {
    throw new Error(`the real-model tests need python3 with requirements.txt installed: ${(err as Error).message}`, { cause: err });
  }
  const cli = join(scripts, 'transformers');
  if (!existsSync(cli)) throw new Error(`no \`transformers\` CLI at ${cli}: run \`python3 -m pip install -r requirements.txt\` (or set JF_TRANSFORMERS_CLI)`);
  return cli;
}

/**
 * Serves the prepared model; resolves once GET /v1/models lists it. The server process gets
 * `threads` torch threads (OMP_NUM_THREADS), default 1: the test's own processes need the other core.
 */
export async function serveSmolLM2(opts: { threads?: number; startTimeoutMs?: number } = {}): Promise<ServedModel> {
  if (!existsSync(join(SMOLLM2_DIR, 'judgeflow-model.json'))) {
    throw new Error(`SmolLM2 is not prepared at ${SMOLLM2_DIR}: run \`python3 scripts/prepare-smollm2.py ${SMOLLM2_DIR}\` (needs requirements.txt installed)`);
  }
  const cli = transformersCli();
  const port = await freePort();
  const threads = String(opts.threads ?? 1);
  const child: ChildProcess = spawn(cli, ['serve', SMOLLM2_DIR, '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warning'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, OMP_NUM_THREADS: threads, MKL_NUM_THREADS: threads, HF_HUB_OFFLINE: '1' },
  });
  let log = '';
  const keep = (b: Buffer) => {
    log = (log + b.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    exited = `exited with ${code ?? signal}`;
  });
  const close = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  };

  const baseUrl = `http://127.0.0.1:${port}/v1`;
  const deadline = Date.now() + (opts.startTimeoutMs ?? 180_000);
  for (;;) {
    if (exited) throw new Error(`transformers serve ${exited} before answering:\n${log}`);
    try {
      const res = await fetch(`${baseUrl}/models`);
      if (res.ok) {
        const body = (await res.json()) as { data: { id: string }[] };
        if (body.data.some((m) => m.id === SMOLLM2_DIR)) return { baseUrl, model: SMOLLM2_DIR, close };
      }
    } catch {
      // not listening yet: poll again
    }
    if (Date.now() > deadline) {
      await close();
      throw new Error(`transformers serve did not list ${SMOLLM2_DIR} at ${baseUrl}/models in time:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
