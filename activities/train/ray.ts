/**
 * The `ray` backend: Ray Jobs over the dashboard's REST API. The job key is the deterministic
 * `submission_id`: a duplicate submission answers HTTP 500 "already exists", which attaches. A head
 * that was restarted no longer knows the job (404): the job is `lost` and the stage's policy decides.
 */
import { shellCommand } from './shell.js';
import { tailText, TrainBackendError, type SubmitResult, type TrainBackend, type TrainJobSpec, type TrainJobStatus } from './backend.js';

const STATES: Record<string, TrainJobStatus['state']> = { PENDING: 'pending', RUNNING: 'running', SUCCEEDED: 'succeeded', FAILED: 'failed', STOPPED: 'cancelled' };

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

  private async call(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown; text: string }> {
    let res: Response;
    try {
      res = await fetch(`${this.address.replace(/\/$/, '')}${path}`, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      throw new RayUnavailableError(`Ray at ${this.address}: ${(err as Error).message}`, { cause: err });
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined; // error pages are text; callers read `text`
    }
    return { status: res.status, json, text };
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
