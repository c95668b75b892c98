/**
 * Activities of the `evaluate` stage: import the dataset and prepare judge requests (rows in
 * Postgres, never payloads), then parse the judge outputs into judgments and compute metrics.
 * Both are idempotent: a retry after a crash converges on the same rows.
 */
import { Context } from '@temporalio/activity';
import { and, asc, eq, lt } from 'drizzle-orm';
import type { Db } from '../../db/client.js';
import { datasetItems, datasets, judgments, metrics } from '../../db/schema/index.js';
import type { EvaluateParams } from '../../spec/kinds/evaluate.js';
import type { DatasetRef, EndpointSpec } from '../../workflows/types.js';
import { loadDataset, type McItem } from '../evaluate/datasets.js';
import { computeMetrics, type JudgmentRecord, type MetricRow } from '../evaluate/metrics.js';
import { parseChoice } from '../evaluate/parse.js';
import { renderJudgePrompt } from '../evaluate/prompt.js';
import { viewsFor } from '../evaluate/views.js';
import { loadResults, prepareRequests, requestIdRange, stageUsage, storeImage } from '../inference/store.js';
import type { PreparedContentPart, PreparedMessage, PrepareRequestRow } from '../inference/types.js';

export interface PrepareEvaluationInput {
  runId: string;
  stageId: string;
  seed: number;
  params: EvaluateParams;
  dataset: DatasetRef;
  /** The judge endpoint: its fingerprint is part of every request's cache key. */
  endpoint: EndpointSpec;
}
export interface PrepareEvaluationOutput {
  datasetId: number;
  items: number;
  requests: number;
  fromId: number;
  toId: number;
}
export interface ScoreEvaluationInput {
  runId: string;
  stageId: string;
  datasetId: number;
  seed: number;
  params: EvaluateParams;
  price?: { input_per_mtok: number; output_per_mtok: number };
}
export interface ScoreEvaluationOutput {
  judgments: number;
  accuracy: number | null;
  macroAccuracy: number | null;
}

const ITEM_BATCH = 500;

/** `<dataset item key>|v<view>|s<sample>`: the request's item key inside the stage. */
export function requestKey(itemKey: string, view: number, sample: number): string {
  return `${itemKey}|v${view}|s${sample}`;
}

export function parseRequestKey(key: string): { itemKey: string; view: number; sample: number } {
  const m = /^(.*)\|v(\d+)\|s(\d+)$/.exec(key);
  if (!m) throw new Error(`not an evaluate request key: ${key}`);
  return { itemKey: m[1]!, view: Number(m[2]), sample: Number(m[3]) };
}

/** Imports a dataset once per content hash (items and images in one transaction); returns its id. */
async function importDataset(db: Db, ref: DatasetRef): Promise<{ id: number; items: McItem[] | null }> {
  const load = await loadDataset({ path: ref.path, format: ref.format, imagesDir: ref.images });
  const [existing] = await db
    .select({ id: datasets.id })
    .from(datasets)
    .where(and(eq(datasets.contentHash, load.contentHash), eq(datasets.format, load.format)));
  if (existing) return { id: existing.id, items: load.items };
  const imageHashes = new Map<McItem, string>();
  for (const item of load.items) {
    if (item.image?.bytes) imageHashes.set(item, await storeImage(db, item.image.bytes, item.image.mime ?? 'application/octet-stream'));
  }
  const id = await db.transaction(async (tx) => {
    const [row] = await tx
      .insert(datasets)
      .values({ name: ref.name, format: load.format, contentHash: load.contentHash, source: ref.path, itemCount: load.items.length, issues: load.issues })
      .onConflictDoNothing({ target: [datasets.contentHash, datasets.format] })
      .returning({ id: datasets.id });
    if (!row) return null; // another worker imported it concurrently
    for (let i = 0; i < load.items.length; i += ITEM_BATCH) {
      await tx.insert(datasetItems).values(
        load.items.slice(i, i + ITEM_BATCH).map((it, j) => ({
          datasetId: row.id,
          idx: i + j,
          itemKey: it.itemKey,
          query: it.query,
          imageHash: imageHashes.get(it) ?? null,
          candidates: it.candidates,
          best: it.best,
          category: it.category,
          subset: it.subset,
          meta: { ...it.meta, ...(it.image?.path ? { image_path: it.image.path } : {}) },
        })),
      );
    }
    return row.id;
  });
  if (id !== null) return { id, items: load.items };
  const [again] = await db.select({ id: datasets.id }).from(datasets).where(and(eq(datasets.contentHash, load.contentHash), eq(datasets.format, load.format)));
  return { id: again!.id, items: load.items };
}

async function datasetRows(db: Db, datasetId: number, limit?: number) {
  const q = db.select().from(datasetItems).where(limit ? and(eq(datasetItems.datasetId, datasetId), lt(datasetItems.idx, limit)) : eq(datasetItems.datasetId, datasetId)).orderBy(asc(datasetItems.idx));
  return q;
}

function judgeMessages(item: { query: string; imageHash: string | null; candidates: string[] }, perm: number[], params: EvaluateParams, mime: string | undefined): PreparedMessage[] {
  const text = renderJudgePrompt({ template: params.template, query: item.query, candidates: perm.map((c) => item.candidates[c]!), labels: params.labels });
  const content: PreparedContentPart[] = [];
  if (item.imageHash) content.push({ type: 'image_ref', hash: item.imageHash, mime: mime ?? 'image/png' });
  content.push({ type: 'text', text });
  const messages: PreparedMessage[] = [];
  if (params.system) messages.push({ role: 'system', content: params.system });
  messages.push({ role: 'user', content });
  return messages;
}

export function createEvaluateActivities({ db }: { db: Db }) {
  return {
    async prepareEvaluation({ runId, stageId, seed, params, dataset, endpoint }: PrepareEvaluationInput): Promise<PrepareEvaluationOutput> {
      const ctx = Context.current();
      const { id: datasetId } = await importDataset(db, dataset);
      const items = await datasetRows(db, datasetId, dataset.limit);
      const mimes = new Map<string, string>();
      const hashes = [...new Set(items.map((i) => i.imageHash).filter((h): h is string => !!h))];
      if (hashes.length > 0) {
        const res = await db.$client.query<{ hash: string; mime: string }>('select hash, mime from blobs where hash = any($1)', [hashes]);
        for (const r of res.rows) mimes.set(r.hash, r.mime);
      }
      let batch: PrepareRequestRow[] = [];
      const flush = async () => {
        if (batch.length === 0) return;
        await prepareRequests(db, batch, { [params.judge]: endpoint });
        batch = [];
        ctx.heartbeat();
      };
      for (const item of items) {
        const views = viewsFor(params.positions, item.candidates.length, seed, item.itemKey);
        for (const [v, perm] of views.entries()) {
          const messages = judgeMessages(item, perm, params, item.imageHash ? mimes.get(item.imageHash) : undefined);
          for (let s = 0; s < params.samples; s++) {
            batch.push({
              runId,
              stageId,
              itemKey: requestKey(item.itemKey, v, s),
              endpoint: params.judge,
              sampleIndex: s,
              request: { messages, params: { temperature: params.temperature, max_tokens: params.max_tokens, seed, ...(params.top_p !== undefined ? { top_p: params.top_p } : {}) } },
            });
          }
        }
        if (batch.length >= 2000) await flush();
      }
      await flush();
      const range = await requestIdRange(db, runId, stageId);
      return { datasetId, items: items.length, requests: range.count, fromId: range.fromId, toId: range.toId };
    },

    async scoreEvaluation({ runId, stageId, datasetId, seed, params, price }: ScoreEvaluationInput): Promise<ScoreEvaluationOutput> {
      const ctx = Context.current();
      const items = await datasetRows(db, datasetId);
      const byKey = new Map(items.map((i) => [i.itemKey, i]));
      const results = await loadResults(db, runId, stageId);
      const records: JudgmentRecord[] = [];
      const rows: (typeof judgments.$inferInsert)[] = [];
      const viewCache = new Map<string, number[][]>();
      for (const r of results) {
        const { itemKey, view, sample } = parseRequestKey(r.itemKey);
        const item = byKey.get(itemKey);
        if (!item) throw new Error(`request ${r.id} refers to item "${itemKey}", not in dataset ${datasetId}`);
        let views = viewCache.get(itemKey);
        if (!views) {
          views = viewsFor(params.positions, item.candidates.length, seed, itemKey);
          viewCache.set(itemKey, views);
        }
        const perm = views[view]!;
        const failed = r.status !== 'succeeded';
        const position = failed ? null : parseChoice(r.content ?? '', item.candidates.length, params.labels).position;
        const chosen = position === null ? null : perm[position]!;
        records.push({ itemKey, category: item.category, subset: item.subset, view, sample, permutation: perm, chosenPosition: position, failed, outputTokens: r.completionTokens ?? undefined, latencyMs: r.latencyMs ?? undefined });
        rows.push({
          runId,
          stageId,
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
      // One statement per 2,000 judgments (unnest arrays): idempotent on the primary key.
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
        ctx.heartbeat();
      }
      // Only the items this stage judged (a dataset `limit` leaves the rest out).
      const judgedKeys = new Set(records.map((r) => r.itemKey));
      const scored = items.filter((i) => judgedKeys.has(i.itemKey)).map((i) => ({ itemKey: i.itemKey, best: i.best, category: i.category, subset: i.subset }));
      const computed: MetricRow[] = computeMetrics(records, scored, { seed, bootstrap: params.bootstrap });
      const headline = computed.find((m) => m.metric === 'accuracy' && m.scope === 'overall' && m.policy === params.headline_policy);
      const macro = computed.find((m) => m.metric === 'accuracy' && m.scope === 'macro' && m.policy === params.headline_policy);
      const usage = await stageUsage(db, runId, stageId, price);
      const all: MetricRow[] = [
        ...computed.filter((m) => m.metric !== 'headline_accuracy'),
        ...(headline ? [{ ...headline, metric: 'headline_accuracy' }, ...(macro ? [{ ...macro, metric: 'headline_macro_accuracy' }] : [])] : []),
        { metric: 'requests', scope: 'overall', policy: '', value: usage.requests, n: usage.requests },
        { metric: 'requests_cached', scope: 'overall', policy: '', value: usage.cached, n: usage.requests },
        { metric: 'requests_failed', scope: 'overall', policy: '', value: usage.failed, n: usage.requests },
        { metric: 'prompt_tokens', scope: 'overall', policy: '', value: usage.promptTokens, n: usage.requests },
        { metric: 'completion_tokens', scope: 'overall', policy: '', value: usage.completionTokens, n: usage.requests },
        { metric: 'cost_usd', scope: 'overall', policy: '', value: usage.costUsd, n: usage.requests },
      ];
      await db.transaction(async (tx) => {
        await tx.delete(metrics).where(and(eq(metrics.runId, runId), eq(metrics.stageId, stageId)));
        await tx.insert(metrics).values(all.map((m) => ({ runId, stageId, metric: m.metric, scope: m.scope, policy: m.policy, value: m.value, ciLow: m.ciLow ?? null, ciHigh: m.ciHigh ?? null, n: m.n })));
      });
      return { judgments: rows.length, accuracy: headline?.value ?? null, macroAccuracy: macro?.value ?? null };
    },
  };
}

export type EvaluateActivities = ReturnType<typeof createEvaluateActivities>;
