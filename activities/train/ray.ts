/**
 * The `ray` backend: Ray Jobs over the dashboard's REST API. The job key is the deterministic
 * `submission_id`: a duplicate submission answers HTTP 500 "already exists", which attaches. A head
 * that was restarted no longer knows the job (404): the job is `lost` and the stage's policy decides.
 */
import http from 'node:http';
import https from 'node:https';
import { shellCommand } from './shell.js';
import { tailText, TrainBackendError, type SubmitResult, type TrainBackend, type TrainJobSpec, type TrainJobStatus } from './backend.js';

const STATES: Record<string, TrainJobStatus['state']> = {
  PENDING: 'pending',
  RUNNING: 'running',
  SUCCEEDED: 'succeeded',
  FAILED: 'failed',
  STOPPED: 'cancelled',
};

/** A Ray head that could not be reached or answered 5xx: retryable (the activity retries). */
export class RayUnavailableError extends Error {
  override readonly name = 'RayUnavailableError';
}

export class RayBackend implements TrainBackend {
  readonly name = 'ray';
  constructor(
    readonly address: string,
    readonly numCpus?: number,
  ) {}

  // node:http, not fetch: Ray's dashboard refuses POSTs carrying fetch's Sec-Fetch-* headers
  // ("method not allowed for browser traffic").
  private call(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown; text: string }> {
    const url = new URL(`${this.address.replace(/\/$/, '')}${path}`);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolvePromise, reject) => {
      const req = (url.protocol === 'https:' ? https : http).request(
        url,
        { method, headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }, timeout: 30_000 },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => reject(new RayUnavailableError(`Ray at ${this.address}: ${err.message}`, { cause: err })));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            try {
              json = text ? JSON.parse(text) : undefined;
            } catch {
              json = undefined; // error pages are text; callers read `text`
            }
            resolvePromise({ status: res.statusCode ?? 0, json, text });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('no answer in 30 s')));
      req.on('error', (err) => reject(new RayUnavailableError(`Ray at ${this.address}: ${err.message}`, { cause: err })));
      req.end(payload);
    });
  }

  async find(key: string): Promise<string | undefined> {
    const r = await this.call('GET', `/api/jobs/${encodeURIComponent(key)}`);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw new RayUnavailableError(`Ray GET job ${key}: HTTP ${r.status} ${r.text.slice(0, 200)}`);
    return key;
  }

  /** Every job the head knows: its own job list (submission ids). */
  async list(): Promise<string[]> {
    const r = await this.call('GET', '/api/jobs/');
    if (r.status !== 200 || !Array.isArray(r.json)) throw new RayUnavailableError(`Ray GET jobs: HTTP ${r.status}`);
    return (r.json as { submission_id?: string }[]).map((j) => j.submission_id ?? '').filter(Boolean);
  }

  async submit(spec: TrainJobSpec): Promise<SubmitResult> {
    if (await this.find(spec.key)) return { jobId: spec.key, attached: true };
    const r = await this.call('POST', '/api/jobs/', {
      submission_id: spec.key,
      entrypoint: `cd ${shellCommand([spec.cwd])} && exec ${shellCommand(spec.argv)}`,
      runtime_env: { env_vars: spec.env },
      ...(this.numCpus !== undefined ? { entrypoint_num_cpus: this.numCpus } : {}),
      metadata: spec.metadata ?? {},
    });
    if (r.status === 200) return { jobId: spec.key, attached: false };
    if (r.status === 500 && /already exists/i.test(r.text)) return { jobId: spec.key, attached: true };
    if (r.status >= 500) throw new RayUnavailableError(`Ray submit ${spec.key}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
    throw new TrainBackendError(`Ray refused job ${spec.key}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
  }

  async status(jobId: string): Promise<TrainJobStatus> {
    const r = await this.call('GET', `/api/jobs/${encodeURIComponent(jobId)}`);
    if (r.status === 404) return { state: 'lost', message: `the Ray head at ${this.address} does not know job ${jobId} (restarted?)` };
    if (r.status !== 200) throw new RayUnavailableError(`Ray GET job ${jobId}: HTTP ${r.status}`);
    const j = r.json as { status?: string; message?: string; driver_exit_code?: number | null };
    const state = STATES[j.status ?? ''];
    if (!state) throw new TrainBackendError(`Ray job ${jobId}: unknown status ${String(j.status)}`);
    return {
      state,
      ...(typeof j.driver_exit_code === 'number' ? { exitCode: j.driver_exit_code } : {}),
      ...(j.message ? { message: j.message } : {}),
    };
  }

  async logs(jobId: string, maxBytes: number): Promise<string> {
    const r = await this.call('GET', `/api/jobs/${encodeURIComponent(jobId)}/logs`);
    if (r.status === 404) return '';
    if (r.status !== 200) throw new RayUnavailableError(`Ray GET logs ${jobId}: HTTP ${r.status}`);
    return tailText((r.json as { logs?: string }).logs ?? '', maxBytes);
  }

  async cancel(jobId: string): Promise<void> {
    const r = await this.call('POST', `/api/jobs/${encodeURIComponent(jobId)}/stop`);
    if (r.status === 404 || r.status === 200) return;
    throw new RayUnavailableError(`Ray stop ${jobId}: HTTP ${r.status} ${r.text.slice(0, 200)}`);
  }
}
