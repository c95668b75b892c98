/**
 * Activities of the `train` stage: export the sft-set, submit the job (look the key up first,
 * attach if the backend has it, write the job id before anyone waits), check its status in short
 * calls (recording state changes with times, the log's tail and the trainer's metrics), cancel it,
 * and record the checkpoint artifact with its lineage and file digests.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type { Db } from '../../db/client.js';
import { PACKAGE_ROOT } from '../../spec/load.js';
import { baseModelPath, type TrainBackendSpec, type TrainParams } from '../../spec/kinds/train.js';
import { TERMINAL_STATES, TrainBackendError, type TrainBackend, type TrainJobState, type TrainJobStatus } from '../train/backend.js';
import { backendFor } from '../train/index.js';
import { exportSftSet as defaultExporter, SftSetError, type SftSetExporter } from '../train/sft-set.js';

/** Worker variables every job sees (the spec's `env` adds to them). */
const BASE_ENV = ['PATH', 'HOME', 'LANG', 'TMPDIR', 'PYENV_VERSION'];

export interface TrainDeps {
  db: Db;
  /** Where the default job and output folders live (`JUDGEFLOW_STATE_DIR`). */
  stateDir?: string;
  /** The sft-set → TRL JSONL seam (default: ./train/sft-set.ts). */
  exportSftSet?: SftSetExporter;
  /** Backends by spec (tests count submissions through their own instances). */
  backendFor?: (spec: TrainBackendSpec) => TrainBackend;
  env?: NodeJS.ProcessEnv;
}

export interface PrepareTrainingInput {
  runId: string;
  stageId: string;
  sftArtifactId: number;
  params: TrainParams;
}
export interface PrepareTrainingOutput {
  /** The first attempt number of this stage execution (earlier executions' jobs keep theirs). */
  attempt: number;
  dataPath: string;
  rows: number;
}
export interface TrainJobRef {
  runId: string;
  stageId: string;
  attempt: number;
  backend: TrainBackendSpec;
  jobId: string;
}
export interface SubmitTrainingInput {
  runId: string;
  stageId: string;
  attempt: number;
  params: TrainParams;
  dataPath: string;
  /** Why this attempt exists when it is a resubmission (recorded as its first event). */
  note?: string;
}
export interface SubmitTrainingOutput {
  jobId: string;
  key: string;
  attached: boolean;
  outputDir: string;
}
export interface PollTrainingInput extends TrainJobRef {
  outputDir: string;
  logTailBytes: number;
}
export interface PollTrainingOutput extends TrainJobStatus {
  /** The log's tail, given once the job ended unsuccessfully. */
  logTail?: string;
}
export interface CancelTrainingInput extends TrainJobRef {
  /** Recorded state: cancelled (the run was cancelled) or timed_out. */
  state: 'cancelled' | 'timed_out';
  reason: string;
}
export interface FinishTrainingInput {
  runId: string;
  stageId: string;
  attempt: number;
  params: TrainParams;
  sftArtifactId: number;
  outputDir: string;
  jobId: string;
}
export interface FinishTrainingOutput {
  artifactId: number;
  uri: string;
  files: number;
  finalLoss: number | null;
}

/** The job key: deterministic from run, stage and attempt (a Ray submission id, a Slurm job name, a folder). */
export function trainJobKey(runId: string, stageId: string, attempt: number): string {
  const h = createHash('sha256').update(`${runId}\u0000${stageId}`).digest('hex').slice(0, 16);
  return `jf-${h}-a${attempt}`;
}

function fill(arg: string, values: Record<string, string>): string {
  return arg.replace(/\{([a-z_]+)\}/g, (m, name: string) => values[name] ?? m);
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p)));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}

/** Parses metrics.jsonl: one JSON object per line with a numeric `step`; a torn last line is skipped. */
export function parseMetrics(text: string): { step: number; loss: number | null; values: Record<string, unknown> }[] {
  const out: { step: number; loss: number | null; values: Record<string, unknown> }[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      continue; // the trainer may be writing this line right now
    }
    if (!v || typeof v !== 'object' || typeof (v as { step?: unknown }).step !== 'number') continue;
    const values = v as Record<string, unknown>;
    out.push({ step: values.step as number, loss: typeof values.loss === 'number' ? values.loss : null, values });
  }
  return out;
}

export function createTrainActivities(deps: TrainDeps) {
  const { db } = deps;
  const env = deps.env ?? process.env;
  const stateDir = resolve(deps.stateDir ?? env.JUDGEFLOW_STATE_DIR ?? '.judgeflow');
  const exporter = deps.exportSftSet ?? defaultExporter;
  const backendOf = deps.backendFor ?? ((spec: TrainBackendSpec) => backendFor(spec, stateDir, env));
  const stageDir = (params: TrainParams, runId: string, stageId: string) => resolve(params.output_dir ?? join(stateDir, 'train'), runId, stageId);

  const appendEvent = async (
    ref: { runId: string; stageId: string; attempt: number },
    state: string,
    message?: string,
    extra: { logTail?: string; error?: string } = {},
  ) => {
    // Only a change of state is an event; the row's state is its last one.
    await db.$client.query(
      `update train_jobs set
         events = case when state = $4 then events else events || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object('state', $4::text, 'at', to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'message', $5::text))) end,
         state = $4, log_tail = coalesce($6, log_tail), error = coalesce($7, error), updated_at = now()
       where run_id = $1 and stage_id = $2 and attempt = $3`,
      [ref.runId, ref.stageId, ref.attempt, state, message ?? null, extra.logTail ?? null, extra.error ?? null],
    );
  };

  const finalMetrics = async (runId: string, stageId: string, attempt: number) => {
    const rows = (
      await db.$client.query<{ step: number; loss: number | null }>(
        'select step, loss from train_metrics where run_id = $1 and stage_id = $2 and attempt = $3 order by step',
        [runId, stageId, attempt],
      )
    ).rows;
    const withLoss = rows.filter((r) => r.loss !== null);
    return { steps: rows.at(-1)?.step ?? 0, first_loss: withLoss[0]?.loss ?? null, final_loss: withLoss.at(-1)?.loss ?? null };
  };

  const recordCheckpoint = async (
    runId: string,
    stageId: string,
    sftArtifactId: number,
    uri: string,
    contentHash: string,
    files: number,
    summary: Record<string, unknown>,
  ) => {
    const r = await db.$client.query<{ id: number }>(
      `insert into artifacts (kind, name, run_id, stage_id, source, content_hash, rows, summary, sealed_at)
       values ('checkpoint', 'checkpoint', $1, $2, $3, $4, $5, $6, now())
       on conflict (run_id, stage_id, name) do update set source = excluded.source, content_hash = excluded.content_hash, rows = excluded.rows, summary = excluded.summary, sealed_at = now()
       returning id`,
      [runId, stageId, uri, contentHash, files, JSON.stringify(summary)],
    );
    const artifactId = r.rows[0]!.id;
    await db.$client.query('insert into artifact_parents (artifact_id, parent_id) values ($1, $2) on conflict do nothing', [artifactId, sftArtifactId]);
    return artifactId;
  };

  /** A hosted fine-tuning job's checkpoint: the fine-tuned model's name. */
  const finishHosted = async ({ runId, stageId, attempt, params, sftArtifactId, jobId }: FinishTrainingInput): Promise<FinishTrainingOutput> => {
    const st = await backendOf(params.backend).status(jobId);
    if (!st.fineTunedModel) throw ApplicationFailure.nonRetryable(`fine-tuning job ${jobId} succeeded without a fine_tuned_model`, 'TrainOutputError');
    const uri = `openai:${st.fineTunedModel}`;
    const final = await finalMetrics(runId, stageId, attempt);
    const summary = {
      uri,
      base_model: params.base_model,
      backend: 'openai',
      job_id: jobId,
      attempt,
      sft_set: sftArtifactId,
      hyperparams: params.hyperparams,
      files: {},
      final_metrics: final,
    };
    const artifactId = await recordCheckpoint(runId, stageId, sftArtifactId, uri, createHash('sha256').update(uri).digest('hex'), 0, summary);
    return { artifactId, uri, files: 0, finalLoss: final.final_loss };
  };

  return {
    /** Exports the sft-set for the trainer and numbers this execution's first attempt. */
    async prepareTraining({ runId, stageId, sftArtifactId, params }: PrepareTrainingInput): Promise<PrepareTrainingOutput> {
      const dir = stageDir(params, runId, stageId);
      const dataPath = join(dir, 'data', `sft-${sftArtifactId}.jsonl`);
      let rows: number;
      try {
        rows = (await exporter(db, sftArtifactId, dataPath)).rows;
      } catch (err) {
        if (err instanceof SftSetError) throw ApplicationFailure.nonRetryable(err.message, 'SftSetError');
        throw err;
      }
      if (rows === 0) throw ApplicationFailure.nonRetryable(`sft-set ${sftArtifactId} has no rows: nothing to train on`, 'SftSetError');
      const r = await db.$client.query<{ next: number }>(
        'select coalesce(max(attempt) + 1, 0)::int as next from train_jobs where run_id = $1 and stage_id = $2',
        [runId, stageId],
      );
      return { attempt: r.rows[0]!.next, dataPath, rows };
    },

    /**
     * Submits attempt `attempt`, or attaches to the job the backend already holds under its key.
     * The row (with the job id) is written before the workflow starts waiting.
     */
    async submitTrainingJob({ runId, stageId, attempt, params, dataPath, note }: SubmitTrainingInput): Promise<SubmitTrainingOutput> {
      const backend = backendOf(params.backend);
      const key = trainJobKey(runId, stageId, attempt);
      const outputDir = join(stageDir(params, runId, stageId), `a${attempt}`);
      await db.$client.query(
        `insert into train_jobs (run_id, stage_id, attempt, backend, job_key, output_dir, events)
         values ($1, $2, $3, $4, $5, $6, jsonb_build_array(jsonb_strip_nulls(jsonb_build_object('state', 'submitted', 'at', to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'message', $7::text))))
         on conflict (run_id, stage_id, attempt) do nothing`,
        [runId, stageId, attempt, backend.name, key, outputDir, note ?? null],
      );
      const existing = await backend.find(key);
      let jobId: string;
      let attached: boolean;
      if (existing !== undefined) {
        jobId = existing;
        attached = true;
      } else {
        await mkdir(outputDir, { recursive: true });
        const base = baseModelPath(params.base_model);
        const metrics = join(outputDir, 'metrics.jsonl');
        const checkpoint = join(outputDir, 'checkpoint');
        const config = join(outputDir, 'train-config.json');
        await writeFile(
          config,
          `${JSON.stringify({ data: dataPath, base_model: base, output: checkpoint, metrics, hyperparams: params.hyperparams }, null, 2)}\n`,
        );
        const values = {
          python: params.python,
          trainers: join(PACKAGE_ROOT, 'trainers'),
          config,
          data: dataPath,
          base_model: base,
          output: checkpoint,
          metrics,
        };
        const jobEnv: Record<string, string> = {};
        for (const name of [...BASE_ENV, ...params.env]) if (env[name] !== undefined) jobEnv[name] = env[name]!;
        let out;
        try {
          out = await backend.submit({
            key,
            argv: params.command.map((a) => fill(a, values)),
            cwd: PACKAGE_ROOT,
            env: jobEnv,
            outputDir,
            metadata: { judgeflow_key: key },
            trainingFile: dataPath,
            baseModel: params.base_model,
            hyperparams: params.hyperparams,
          });
        } catch (err) {
          if (!(err instanceof TrainBackendError)) throw err; // unavailable backends: the activity retries
          await appendEvent({ runId, stageId, attempt }, 'failed', err.message, { error: err.message });
          throw ApplicationFailure.nonRetryable(`the ${backend.name} backend refused job ${key}: ${err.message}`, 'TrainBackendError');
        }
        jobId = out.jobId;
        attached = out.attached;
      }
      await db.$client.query(
        'update train_jobs set job_id = $4, attached = attached + $5, updated_at = now() where run_id = $1 and stage_id = $2 and attempt = $3',
        [runId, stageId, attempt, jobId, attached ? 1 : 0],
      );
      return { jobId, key, attached, outputDir };
    },

    /** One status check: records a state change, the log's tail and the metrics so far. */
    async pollTrainingJob({ runId, stageId, attempt, backend: spec, jobId, outputDir, logTailBytes }: PollTrainingInput): Promise<PollTrainingOutput> {
      const backend = backendOf(spec);
      const st = await backend.status(jobId);
      const logTail = await backend.logs(jobId, logTailBytes).catch((err: unknown) => `(log unavailable: ${(err as Error).message})`);
      const metricsPath = join(outputDir, 'metrics.jsonl');
      const lines = backend.metrics
        ? (await backend.metrics(jobId)).map((v) => ({ step: Number(v.step), loss: typeof v.loss === 'number' ? v.loss : null, values: v }))
        : existsSync(metricsPath)
          ? parseMetrics(await readFile(metricsPath, 'utf8'))
          : [];
      if (lines.length > 0) {
        await db.$client.query(
          `insert into train_metrics (run_id, stage_id, attempt, step, loss, values)
           select $1, $2, $3, step, loss, v from unnest($4::int[], $5::float8[], $6::jsonb[]) as t(step, loss, v)
           on conflict (run_id, stage_id, attempt, step) do update set loss = excluded.loss, values = excluded.values`,
          [runId, stageId, attempt, lines.map((l) => l.step), lines.map((l) => l.loss), lines.map((l) => JSON.stringify(l.values))],
        );
      }
      const ended = (TERMINAL_STATES as readonly TrainJobState[]).includes(st.state);
      const message =
        st.state === 'failed' || st.state === 'lost' ? (st.message ?? (st.exitCode !== undefined ? `exit code ${st.exitCode}` : undefined)) : undefined;
      await appendEvent({ runId, stageId, attempt }, st.state, message, {
        logTail,
        ...(ended && st.state !== 'succeeded' ? { error: message ?? st.state } : {}),
      });
      return ended && st.state !== 'succeeded' ? { ...st, logTail } : st;
    },

    /** Stops the job at the backend and records why. */
    async cancelTrainingJob({ runId, stageId, attempt, backend: spec, jobId, state, reason }: CancelTrainingInput): Promise<void> {
      await backendOf(spec).cancel(jobId);
      await appendEvent({ runId, stageId, attempt }, state, reason, { error: reason });
    },

    /** Digests the checkpoint folder and records the `checkpoint` artifact (parent: the sft-set). */
    async finishTraining({ runId, stageId, attempt, params, sftArtifactId, outputDir, jobId }: FinishTrainingInput): Promise<FinishTrainingOutput> {
      if (params.backend.type === 'openai') return finishHosted({ runId, stageId, attempt, params, sftArtifactId, outputDir, jobId });
      const dir = join(outputDir, 'checkpoint');
      if (!existsSync(dir) || !(await stat(dir)).isDirectory()) {
        throw ApplicationFailure.nonRetryable(`the trainer reported success but wrote no checkpoint folder ${dir}`, 'TrainOutputError');
      }
      const files: Record<string, string> = {};
      for (const p of await listFiles(dir)) files[relative(dir, p)] = await sha256File(p);
      const metricsRows = await db.$client.query<{ step: number; loss: number | null; values: Record<string, unknown> }>(
        'select step, loss, values from train_metrics where run_id = $1 and stage_id = $2 and attempt = $3 order by step',
        [runId, stageId, attempt],
      );
      const withLoss = metricsRows.rows.filter((r) => r.loss !== null);
      const finalLoss = withLoss.at(-1)?.loss ?? null;
      const contentHash = createHash('sha256')
        .update(
          Object.entries(files)
            .map(([f, h]) => `${f}\u0000${h}`)
            .join('\n'),
        )
        .digest('hex');
      const uri = `file://${dir}`;
      const summary = {
        uri,
        base_model: params.base_model,
        backend: params.backend.type,
        job_id: jobId,
        attempt,
        sft_set: sftArtifactId,
        hyperparams: params.hyperparams,
        files,
        final_metrics: { steps: metricsRows.rows.at(-1)?.step ?? 0, first_loss: withLoss[0]?.loss ?? null, final_loss: finalLoss },
      };
      const r = await db.$client.query<{ id: number }>(
        `insert into artifacts (kind, name, run_id, stage_id, source, content_hash, rows, summary, sealed_at)
         values ('checkpoint', 'checkpoint', $1, $2, $3, $4, $5, $6, now())
         on conflict (run_id, stage_id, name) do update set source = excluded.source, content_hash = excluded.content_hash, rows = excluded.rows, summary = excluded.summary, sealed_at = now()
         returning id`,
        [runId, stageId, uri, contentHash, Object.keys(files).length, JSON.stringify(summary)],
      );
      const artifactId = r.rows[0]!.id;
      await db.$client.query('insert into artifact_parents (artifact_id, parent_id) values ($1, $2) on conflict do nothing', [artifactId, sftArtifactId]);
      return { artifactId, uri, files: Object.keys(files).length, finalLoss };
    },
  };
}

export type TrainActivities = ReturnType<typeof createTrainActivities>;
