/**
 * The `openai` backend: an OpenAI-compatible fine-tuning API. The sft-set is converted to the
 * chat fine-tuning format (string content; an image part becomes an `image_url` data URL) and
 * uploaded; the job carries the key in `metadata.judgeflow_key`, which is how `find` looks it up
 * before creating another. Events are the log; `metrics` events (step, train_loss) are the metrics.
 * The checkpoint is the fine-tuned model's name (`openai:<model>`).
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import OpenAI, { APIError, toFile } from 'openai';
import { tailText, TrainBackendError, type SubmitResult, type TrainBackend, type TrainJobSpec, type TrainJobStatus } from './backend.js';

const STATES: Record<string, TrainJobStatus['state']> = {
  validating_files: 'pending',
  queued: 'pending',
  running: 'running',
  succeeded: 'succeeded',
  failed: 'failed',
  cancelled: 'cancelled',
};
const MIME: Record<string, string> = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.webp': 'image/webp', '.gif': 'image/gif' };
/** Hyper-parameters the fine-tuning API takes. */
const API_HYPERPARAMS = ['n_epochs', 'batch_size', 'learning_rate_multiplier'];

interface Part {
  type: string;
  text?: string;
}

/** A TRL conversational JSONL file as OpenAI chat fine-tuning JSONL (images inlined as data URLs). */
export async function toOpenAIChatJsonl(trl: string): Promise<string> {
  const out: string[] = [];
  for (const line of trl.split('\n')) {
    if (!line.trim()) continue;
    const row = JSON.parse(line) as { messages: { role: string; content: string | Part[] }[]; images?: string[] };
    const images = [...(row.images ?? [])];
    const messages = [];
    for (const m of row.messages) {
      if (typeof m.content === 'string' || !m.content.some((p) => p.type === 'image')) {
        messages.push({ role: m.role, content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text ?? '').join('\n\n') });
        continue;
      }
      const content = [];
      for (const p of m.content) {
        if (p.type === 'image') {
          const path = images.shift();
          if (!path) throw new TrainBackendError('an image part has no image path in `images`');
          content.push({
            type: 'image_url',
            image_url: { url: `data:${MIME[extname(path).toLowerCase()] ?? 'image/png'};base64,${(await readFile(path)).toString('base64')}` },
          });
        } else content.push({ type: 'text', text: p.text ?? '' });
      }
      messages.push({ role: m.role, content });
    }
    out.push(JSON.stringify({ messages }));
  }
  return out.map((l) => `${l}\n`).join('');
}

export class OpenAIFineTuneBackend implements TrainBackend {
  readonly name = 'openai';
  constructor(readonly client: OpenAI) {}

  async find(key: string): Promise<string | undefined> {
    for await (const job of this.client.fineTuning.jobs.list({ metadata: { judgeflow_key: key }, limit: 100 })) {
      if (job.metadata?.judgeflow_key === key) return job.id;
    }
    return undefined;
  }

  async submit(spec: TrainJobSpec): Promise<SubmitResult> {
    const existing = await this.find(spec.key);
    if (existing) return { jobId: existing, attached: true };
    if (!spec.trainingFile || !spec.baseModel) throw new TrainBackendError('the openai backend needs the training file and the base model name');
    const body = await toOpenAIChatJsonl(await readFile(spec.trainingFile, 'utf8'));
    try {
      const file = await this.client.files.create({ file: await toFile(Buffer.from(body), `${spec.key}.jsonl`), purpose: 'fine-tune' });
      const hp = Object.fromEntries(Object.entries(spec.hyperparams ?? {}).filter(([k]) => API_HYPERPARAMS.includes(k)));
      const job = await this.client.fineTuning.jobs.create({
        model: spec.baseModel,
        training_file: file.id,
        metadata: { judgeflow_key: spec.key, ...(spec.metadata ?? {}) },
        ...(Object.keys(hp).length > 0 ? { hyperparameters: hp } : {}),
      });
      return { jobId: job.id, attached: false };
    } catch (err) {
      if (err instanceof APIError && err.status !== undefined && err.status >= 400 && err.status < 500 && err.status !== 429) {
        throw new TrainBackendError(`fine-tuning API: HTTP ${err.status} ${err.message}`, { cause: err });
      }
      throw err;
    }
  }

  async status(jobId: string): Promise<TrainJobStatus> {
    try {
      const job = await this.client.fineTuning.jobs.retrieve(jobId);
      const state = STATES[job.status];
      if (!state) throw new TrainBackendError(`fine-tuning job ${jobId}: unknown status ${job.status}`);
      return {
        state,
        ...(job.error?.message ? { message: job.error.message } : {}),
        ...(job.fine_tuned_model ? { fineTunedModel: job.fine_tuned_model } : {}),
      };
    } catch (err) {
      if (err instanceof APIError && err.status === 404) return { state: 'lost', message: `the fine-tuning API does not know job ${jobId}` };
      throw err;
    }
  }

  private async events(jobId: string): Promise<{ message: string; type?: string; data?: unknown; created_at: number }[]> {
    const all = [];
    for await (const e of this.client.fineTuning.jobs.listEvents(jobId, { limit: 100 })) all.push(e);
    return all.sort((a, b) => a.created_at - b.created_at);
  }

  async logs(jobId: string, maxBytes: number): Promise<string> {
    return tailText((await this.events(jobId)).map((e) => `${new Date(e.created_at * 1000).toISOString()} ${e.message}\n`).join(''), maxBytes);
  }

  async metrics(jobId: string): Promise<Record<string, unknown>[]> {
    return (await this.events(jobId))
      .filter((e) => e.type === 'metrics' && e.data && typeof (e.data as { step?: unknown }).step === 'number')
      .map((e) => {
        const d = e.data as Record<string, unknown>;
        return { ...d, loss: d.train_loss ?? d.loss };
      });
  }

  async cancel(jobId: string): Promise<void> {
    const st = await this.status(jobId);
    if (st.state === 'pending' || st.state === 'running') await this.client.fineTuning.jobs.cancel(jobId);
  }
}
