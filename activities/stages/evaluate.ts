/**
 * Activities of the `evaluate` stage: import the dataset and prepare judge requests (rows in
 * Postgres, never payloads), then parse the judge outputs into judgments and compute metrics.
 * Both are idempotent: a retry after a crash converges on the same rows.
 */
import { ApplicationFailure } from '@temporalio/common';
import { and, asc, eq, gte, isNotNull, lt } from 'drizzle-orm';
import type { Db } from '../../db/client.js';
import { mcItems, metrics } from '../../db/schema/index.js';
import { DEFAULT_MAX_FAILED_SHARE, judgeEndpointName, type EvaluateParams } from '../../spec/kinds/evaluate.js';
import type { DatasetRef, EndpointSpec } from '../../workflows/types.js';
import { computeMetrics, type JudgmentRecord, type MetricRow } from '../evaluate/metrics.js';
import { parseChoice } from '../evaluate/parse.js';
import { renderJudgePrompt } from '../evaluate/prompt.js';
import { viewsFor } from '../evaluate/views.js';
import { loadResults, prepareRequests, stageUsage } from '../inference/store.js';
import type { PreparedContentPart, PreparedMessage, PrepareRequestRow } from '../inference/types.js';
import { resolveSourceArtifact } from './artifacts.js';

export interface ImportEvaluationDatasetInput {
  /** A file dataset: its artifact (imported at launch), or the file itself in plans from before artifacts. */
  dataset?: DatasetRef;
  /** An upstream stage's mc-items artifact. */
  artifactId?: number;
}
export interface ImportEvaluationDatasetOutput {
  /** The mc-items artifact the stage evaluates (named datasetId since before artifacts). */
  datasetId: number;
  /** Items this stage evaluates (the dataset's `limit` applied). */
  items: number;
  /** The most candidates an item of those has (absent in histories from before it was added). */
  maxCandidates?: number;
}
export interface PrepareEvaluationChunkInput {
  runId: string;
  stageId: string;
  seed: number;
  params: EvaluateParams;
  datasetId: number;
  /** Item index range [fromIdx, toIdx) of the dataset. */
  fromIdx: number;
  toIdx: number;
  /** The judge endpoint: its fingerprint is part of every request's cache key. */
  endpoint: EndpointSpec;
}
export interface RequestRange {
  fromId: number;
  toId: number;
  count: number;
}
export interface JudgeEvaluationChunkInput {
  runId: string;
  stageId: string;
  seed: number;
  params: EvaluateParams;
  datasetId: number;
  fromIdx: number;
  toIdx: number;
}
export interface ComputeEvaluationMetricsInput {
  runId: string;
  stageId: string;
  datasetId: number;
  seed: number;
  params: EvaluateParams;
  price?: { input_per_mtok: number; output_per_mtok: number };
}
export interface ComputeEvaluationMetricsOutput {
  judgments: number;
  accuracy: number | null;
  macroAccuracy: number | null;
}

/** `<dataset item key>|v<view>|s<sample>`: the request's item key inside the stage. */
export function requestKey(itemKey: string, view: number, sample: number): string {
  return `${itemKey}|v${view}|s${sample}`;
}

export function parseRequestKey(key: string): { itemKey: string; view: number; sample: number } {
  const m = /^(.*)\|v(\d+)\|s(\d+)$/.exec(key);
  if (!m) throw new Error(`not an evaluate request key: ${key}`);
  return { itemKey: m[1]!, view: Number(m[2]), sample: Number(m[3]) };
}

async function datasetRows(db: Db, datasetId: number, fromIdx: number, toIdx: number) {
  return db
    .select()
    .from(mcItems)
    .where(and(eq(mcItems.artifactId, datasetId), isNotNull(mcItems.idx), gte(mcItems.idx, fromIdx), lt(mcItems.idx, toIdx)))
    .orderBy(asc(mcItems.idx));
}

async function blobMimes(db: Db, hashes: (string | null)[]): Promise<Map<string, string>> {
  const wanted = [...new Set(hashes.filter((h): h is string => !!h))];
  const out = new Map<string, string>();
  if (wanted.length === 0) return out;
  const res = await db.$client.query<{ hash: string; mime: string }>('select hash, mime from blobs where hash = any($1)', [wanted]);
  for (const r of res.rows) out.set(r.hash, r.mime);
  return out;
}

async function requestRangeOf(db: Db, runId: string, stageId: string, keys: string[]): Promise<RequestRange> {
  const res = await db.$client.query<{ from_id: string | null; to_id: string | null; n: string }>(
    'select min(id) as from_id, max(id) as to_id, count(*) as n from inference_requests where run_id = $1 and stage_id = $2 and item_key = any($3::text[])',
    [runId, stageId, keys],
  );
  const r = res.rows[0]!;
  return { fromId: Number(r.from_id ?? 0), toId: Number(r.to_id ?? -1), count: Number(r.n) };
}

interface JudgmentRow {
  itemKey: string;
  view: number;
  sample: number;
  requestId: number;
  permutation: number[];
  status: 'parsed' | 'unparseable' | 'failed';
  chosenPosition: number | null;
  chosenCandidate: number | null;
  correct: number | null;
  outputTokens: number | null;
  latencyMs: number | null;
}

/** One statement per 2,000 judgments (unnest arrays), idempotent on the primary key. */
async function upsertJudgments(db: Db, runId: string, stageId: string, rows: JudgmentRow[]): Promise<void> {
  for (let i = 0; i < rows.length; i += 2000) {
    const batch = rows.slice(i, i + 2000);
    await db.$client.query(
      `insert into judgments (run_id, stage_id, item_key, view, sample, request_id, permutation, status, chosen_position, chosen_candidate, correct, output_tokens, latency_ms)
       select $1, $2, * from unnest($3::text[], $4::int[], $5::int[], $6::bigint[], $7::jsonb[], $8::text[], $9::int[], $10::int[], $11::int[], $12::int[], $13::int[])
       on conflict (run_id, stage_id, item_key, view, sample) do update set
         request_id = excluded.request_id, permutation = excluded.permutation, status = excluded.status,
         chosen_position = excluded.chosen_position, chosen_candidate = excluded.chosen_candidate, correct = excluded.correct,
         output_tokens = excluded.output_tokens, latency_ms = excluded.latency_ms`,
      [
        runId,
        stageId,
        batch.map((r) => r.itemKey),
        batch.map((r) => r.view),
        batch.map((r) => r.sample),
        batch.map((r) => r.requestId),
        batch.map((r) => JSON.stringify(r.permutation)),
        batch.map((r) => r.status),
        batch.map((r) => r.chosenPosition),
        batch.map((r) => r.chosenCandidate),
        batch.map((r) => r.correct),
        batch.map((r) => r.outputTokens),
        batch.map((r) => r.latencyMs),
      ],
    );
  }
}

/** Requests whose outputs one step of `judgeEvaluationChunk` loads and parses. */
const JUDGE_BATCH = 2000;

function judgeMessages(
  item: { query: string; imageHash: string | null; candidates: string[] },
  perm: number[],
  params: EvaluateParams,
  mime: string | undefined,
): PreparedMessage[] {
  const text = renderJudgePrompt({ template: params.template, query: item.query, candidates: perm.map((c) => item.candidates[c]!), labels: params.labels });
  const content: PreparedContentPart[] = [];
  if (item.imageHash) content.push({ type: 'image_ref', hash: item.imageHash, mime: mime ?? 'image/png' });
  content.push({ type: 'text', text });
  const messages: PreparedMessage[] = [];
  if (params.system) messages.push({ role: 'system', content: params.system });
  messages.push({ role: 'user', content });
  return messages;
}

/** The stage's failed requests by error class, most frequent first: `transient:connection ×300, …`. */
async function failedClasses(db: Db, runId: string, stageId: string): Promise<string> {
  const res = await db.$client.query<{ error_class: string | null; n: number }>(
    `select r.error_class, count(*)::int as n from inference_requests q join inference_results r on r.request_id = q.id
     where q.run_id = $1 and q.stage_id = $2 and r.status = 'failed' group by r.error_class order by n desc, r.error_class limit 3`,
    [runId, stageId],
  );
  return res.rows.map((r) => `${r.error_class ?? 'unknown'} ×${r.n}`).join(', ') || 'none recorded';
}

export function createEvaluateActivities({ db }: { db: Db }) {
  const acts = {
    /** Resolves the stage's mc-items artifact (importing a file only for plans from before artifacts); returns its id and how many items the stage uses. */
    async importEvaluationDataset({ dataset, artifactId }: ImportEvaluationDatasetInput): Promise<ImportEvaluationDatasetOutput> {
      const art = await resolveSourceArtifact(db, { artifactId, dataset, kind: 'mc-items', reader: 'evaluate' });
      const id = art.id;
      const count = art.rows;
      const items = dataset?.limit ? Math.min(dataset.limit, count) : count;
      const res = await db.$client.query<{ k: number | null }>(
        'select max(jsonb_array_length(candidates)) as k from mc_items where artifact_id = $1 and idx < $2',
        [id, items],
      );
      return { datasetId: id, items, maxCandidates: res.rows[0]?.k ?? 2 };
    },

    /** Writes the judge requests of items [fromIdx, toIdx): every order (view) x every sample. */
    async prepareEvaluationChunk({ runId, stageId, seed, params, datasetId, fromIdx, toIdx, endpoint }: PrepareEvaluationChunkInput): Promise<RequestRange> {
      const items = await datasetRows(db, datasetId, fromIdx, toIdx);
      const mimes = await blobMimes(
        db,
        items.map((i) => i.imageHash),
      );
      const rows: PrepareRequestRow[] = [];
      for (const item of items) {
        const views = viewsFor(params.positions, item.candidates.length, seed, item.itemKey);
        for (const [v, perm] of views.entries()) {
          // One request object per order: its samples differ only by sample index (and so by seed).
          const request = {
            messages: judgeMessages(item, perm, params, item.imageHash ? mimes.get(item.imageHash) : undefined),
            params: { temperature: params.temperature, max_tokens: params.max_tokens, seed, ...(params.top_p !== undefined ? { top_p: params.top_p } : {}) },
          };
          for (let s = 0; s < params.samples; s++) {
            rows.push({ runId, stageId, itemKey: requestKey(item.itemKey, v, s), endpoint: judgeEndpointName(params), sampleIndex: s, request });
          }
        }
      }
      await prepareRequests(db, rows, { [judgeEndpointName(params)]: endpoint });
      return requestRangeOf(
        db,
        runId,
        stageId,
        rows.map((r) => r.itemKey),
      );
    },

    /**
     * Parses the judge outputs of items [fromIdx, toIdx) into judgments (idempotent upsert), about
     * JUDGE_BATCH requests at a time, so a large chunk never holds all its outputs in memory.
     */
    async judgeEvaluationChunk({ runId, stageId, seed, params, datasetId, fromIdx, toIdx }: JudgeEvaluationChunkInput): Promise<{ judged: number }> {
      const items = await datasetRows(db, datasetId, fromIdx, toIdx);
      let judged = 0;
      for (let start = 0; start < items.length;) {
        const slice: { item: (typeof items)[number]; views: number[][] }[] = [];
        const keys: string[] = [];
        while (start < items.length && (slice.length === 0 || keys.length < JUDGE_BATCH)) {
          const item = items[start++]!;
          const views = viewsFor(params.positions, item.candidates.length, seed, item.itemKey);
          slice.push({ item, views });
          for (let v = 0; v < views.length; v++) for (let s = 0; s < params.samples; s++) keys.push(requestKey(item.itemKey, v, s));
        }
        const results = await loadResults(db, runId, stageId, { itemKeys: keys });
        const byKey = new Map(slice.map((x) => [x.item.itemKey, x]));
        const rows: JudgmentRow[] = [];
        for (const r of results) {
          const { itemKey, view, sample } = parseRequestKey(r.itemKey);
          const { item, views } = byKey.get(itemKey)!;
          const perm = views[view]!;
          const failed = r.status !== 'succeeded';
          if (!failed && r.content === null) {
            // A succeeded request without its output: judging it would count it unparseable.
            throw ApplicationFailure.create({
              type: 'InferenceIntegrityError',
              nonRetryable: true,
              message: `stage "${stageId}": request ${r.id} (${r.itemKey}) succeeded but its output is missing from inference_cache`,
            });
          }
          const position = failed ? null : parseChoice(r.content ?? '', item.candidates.length, params.labels).position;
          const chosen = position === null ? null : perm[position]!;
          rows.push({
            itemKey,
            view,
            sample,
            requestId: r.id,
            permutation: perm,
            status: failed ? 'failed' : position === null ? 'unparseable' : 'parsed',
            chosenPosition: position,
            chosenCandidate: chosen,
            correct: chosen === null ? null : chosen === item.best ? 1 : 0,
            outputTokens: r.completionTokens,
            latencyMs: r.latencyMs,
          });
        }
        await upsertJudgments(db, runId, stageId, rows);
        judged += rows.length;
      }
      return { judged };
    },

    /** Metrics over every judgment of the stage, replacing any earlier ones of the stage. */
    async computeEvaluationMetrics({ runId, stageId, datasetId, seed, params, price }: ComputeEvaluationMetricsInput): Promise<ComputeEvaluationMetricsOutput> {
      const format = params.answer_format !== undefined ? new RegExp(params.answer_format) : undefined;
      const judgmentRows = db.$client.query<{
        item_key: string;
        view: number;
        sample: number;
        permutation: number[];
        status: string;
        chosen_position: number | null;
        output_tokens: number | null;
        latency_ms: number | null;
        best: number;
        category: string;
        subset: string;
        content: string | null;
      }>(
        // With an answer format, each output is read too (to test it against the format).
        `select j.item_key, j.view, j.sample, j.permutation, j.status, j.chosen_position, j.output_tokens, j.latency_ms, i.best, i.category, i.subset,
                ${format ? 'c.content' : 'null::text'} as content
         from judgments j join mc_items i on i.artifact_id = $3 and i.item_key = j.item_key
         ${format ? 'left join inference_requests q on q.id = j.request_id left join inference_cache c on c.key = q.cache_key' : ''}
         where j.run_id = $1 and j.stage_id = $2
         order by i.idx, j.view, j.sample`,
        [runId, stageId, datasetId],
      );
      // The usage query beside the judgments' (two connections of the pool): a round trip fewer in a row.
      const [res, usage] = await Promise.all([judgmentRows, stageUsage(db, runId, stageId, price)]);
      const records: JudgmentRecord[] = [];
      const scored = new Map<string, { itemKey: string; best: number; category: string; subset: string }>();
      for (const r of res.rows) {
        records.push({
          itemKey: r.item_key,
          category: r.category,
          subset: r.subset,
          view: r.view,
          sample: r.sample,
          permutation: r.permutation,
          chosenPosition: r.chosen_position,
          failed: r.status === 'failed',
          outputTokens: r.output_tokens ?? undefined,
          latencyMs: r.latency_ms ?? undefined,
          ...(format && { formatted: format.test(r.content ?? '') }),
        });
        if (!scored.has(r.item_key)) scored.set(r.item_key, { itemKey: r.item_key, best: r.best, category: r.category, subset: r.subset });
      }
      const computed: MetricRow[] = computeMetrics(records, scored.values(), { seed, bootstrap: params.bootstrap });
      const headline = computed.find((m) => m.metric === 'accuracy' && m.scope === 'overall' && m.policy === params.headline_policy);
      const macro = computed.find((m) => m.metric === 'accuracy' && m.scope === 'macro' && m.policy === params.headline_policy);
      // Items with at least one output that was not a failed request, of all the stage's items.
      const answered = new Set(records.filter((r) => !r.failed).map((r) => r.itemKey)).size;
      const all: MetricRow[] = [
        { metric: 'items_total', scope: 'overall', policy: '', value: scored.size, n: scored.size },
        { metric: 'items_answered', scope: 'overall', policy: '', value: answered, n: scored.size },
        ...computed.filter((m) => m.metric !== 'headline_accuracy'),
        ...(headline ? [{ ...headline, metric: 'headline_accuracy' }] : []),
        ...(macro ? [{ ...macro, metric: 'headline_macro_accuracy' }] : []),
        { metric: 'requests', scope: 'overall', policy: '', value: usage.requests, n: usage.requests },
        { metric: 'requests_cached', scope: 'overall', policy: '', value: usage.cached, n: usage.requests },
        { metric: 'requests_failed', scope: 'overall', policy: '', value: usage.failed, n: usage.requests },
        { metric: 'prompt_tokens', scope: 'overall', policy: '', value: usage.promptTokens, n: usage.requests },
        { metric: 'completion_tokens', scope: 'overall', policy: '', value: usage.completionTokens, n: usage.requests },
        { metric: 'cost_usd', scope: 'overall', policy: '', value: usage.costUsd, n: usage.requests },
      ];
      await db.transaction(async (tx) => {
        await tx.delete(metrics).where(and(eq(metrics.runId, runId), eq(metrics.stageId, stageId)));
        await tx.insert(metrics).values(
          all.map((m) => ({
            runId,
            stageId,
            metric: m.metric,
            scope: m.scope,
            policy: m.policy,
            value: m.value,
            ciLow: m.ciLow ?? null,
            ciHigh: m.ciHigh ?? null,
            n: m.n,
          })),
        );
      });
      // Metrics over what was answered are stored (for a look), but the stage fails: a headline
      // on a fraction of the items must not pass for the stage's result.
      const unanswered = usage.failed + usage.pending;
      const maxShare = params.max_failed_share ?? DEFAULT_MAX_FAILED_SHARE;
      if (usage.requests > 0 && unanswered / usage.requests > maxShare) {
        const classes = await failedClasses(db, runId, stageId);
        throw ApplicationFailure.create({
          type: 'FailedShareExceeded',
          nonRetryable: true,
          message:
            `stage "${stageId}": ${unanswered} of ${usage.requests} requests failed (${((100 * unanswered) / usage.requests).toFixed(1)}%; ${classes}), ` +
            `above max_failed_share ${maxShare}; items answered: ${answered} of ${scored.size}. Launch the same command again to send the failed requests again (answered ones are kept)`,
        });
      }
      return { judgments: records.length, accuracy: headline?.value ?? null, macroAccuracy: macro?.value ?? null };
    },
  };
  return {
    ...acts,
    /**
     * The stage's last step in one activity: the chunk whose inference ended last is judged, then
     * the metrics are computed over every judgment (the other chunks' judging has ended). One
     * activity round trip and workflow task fewer at the end of every stage than the two steps.
     */
    async judgeAndScoreEvaluation({
      judge,
      metrics,
    }: {
      judge: JudgeEvaluationChunkInput;
      metrics: ComputeEvaluationMetricsInput;
    }): Promise<ComputeEvaluationMetricsOutput> {
      await acts.judgeEvaluationChunk(judge);
      return await acts.computeEvaluationMetrics(metrics);
    },
  };
}

export type EvaluateActivities = ReturnType<typeof createEvaluateActivities>;
