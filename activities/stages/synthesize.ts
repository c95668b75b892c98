/**
 * Activities of the `synthesize` stage: open the output artifact, write the negatives' requests
 * (rows, never payloads), turn the outputs into filtered negatives and multiple-choice items, and
 * seal the artifact with its counts. Every write is idempotent: a retried chunk converges on the
 * same rows.
 */
import type { Db } from '../../db/client.js';
import type { SynthesizeParams } from '../../spec/kinds/synthesize.js';
import { templateFor } from '../../spec/kinds/synthesize.js';
import type { DatasetRef, EndpointSpec } from '../../workflows/types.js';
import { loadResults, prepareRequests } from '../inference/store.js';
import type { PreparedMessage, PrepareRequestRow } from '../inference/types.js';
import { assembleItem, filterNegatives, renderNegativePrompt, type NegativeStatus } from '../synthesize/core.js';
import { inTransaction, openStageArtifact, qaRows, resolveSourceArtifact, type QaRow } from './artifacts.js';

export interface BeginSynthesisInput {
  runId: string;
  stageId: string;
  /** The qa-items source: an artifact id, or a file dataset (imported here in plans from before artifacts). */
  artifactId?: number;
  dataset?: DatasetRef;
}
export interface BeginSynthesisOutput {
  sourceArtifactId: number;
  /** The stage's mc-items artifact (open until sealed). */
  artifactId: number;
  /** Source items the stage reads (a dataset's `limit` applied). */
  items: number;
}
export interface SynthesisChunkInput {
  runId: string;
  stageId: string;
  seed: number;
  params: SynthesizeParams;
  sourceArtifactId: number;
  artifactId: number;
  /** Source item index range [fromIdx, toIdx). */
  fromIdx: number;
  toIdx: number;
  endpoint: EndpointSpec;
}
export interface SynthesisRequestRange {
  fromId: number;
  toId: number;
  count: number;
}
export interface BuildSynthesisChunkOutput {
  items: number;
  dropped: number;
}
export interface SealSynthesisInput {
  runId: string;
  stageId: string;
  params: SynthesizeParams;
  sourceArtifactId: number;
  artifactId: number;
  sourceItems: number;
}
/** Per error type: requests made, outputs written, kept by the filters, rejected by reason. */
export interface ErrorTypeStats {
  requested: number;
  written: number;
  kept: number;
  filtered: Record<string, number>;
  request_failed: number;
}
export interface SynthesisSummary {
  source_items: number;
  items: number;
  k: number;
  dropped: Record<string, number>;
  error_types: Record<string, ErrorTypeStats>;
  [key: string]: unknown;
}
export interface SealSynthesisOutput {
  artifactId: number;
  rows: number;
  contentHash: string;
  summary: SynthesisSummary;
}

/** `<source item key>|<error type>|s<sample>`: a negative's request key inside the stage. */
export function negativeKey(itemKey: string, errorType: string, sample: number): string {
  return `${itemKey}|${errorType}|s${sample}`;
}

function negativeMessages(item: QaRow, template: string, errorType: string, params: SynthesizeParams): PreparedMessage[] {
  const text = renderNegativePrompt(template, { question: item.question, reference: item.answer, errorType });
  const messages: PreparedMessage[] = [];
  if (params.system) messages.push({ role: 'system', content: params.system });
  messages.push({
    role: 'user',
    content: [
      ...(item.image_hash ? [{ type: 'image_ref' as const, hash: item.image_hash, mime: item.mime ?? 'image/png' }] : []),
      { type: 'text' as const, text },
    ],
  });
  return messages;
}

export function createSynthesizeActivities({ db }: { db: Db }) {
  return {
    /** Resolves the qa-items source and opens (or reopens) the stage's mc-items artifact. */
    async beginSynthesis({ runId, stageId, artifactId, dataset }: BeginSynthesisInput): Promise<BeginSynthesisOutput> {
      const src = await resolveSourceArtifact(db, { artifactId, dataset, kind: 'qa-items', reader: 'synthesize' });
      const source = src.id;
      const id = await openStageArtifact(db, { runId, stageId, name: 'items', kind: 'mc-items', parent: source });
      const items = dataset?.limit ? Math.min(dataset.limit, src.rows) : src.rows;
      return { sourceArtifactId: source, artifactId: id, items };
    },

    /** Writes the requests of source items [fromIdx, toIdx): every error type × sample. */
    async prepareSynthesisChunk({
      runId,
      stageId,
      seed,
      params,
      sourceArtifactId,
      fromIdx,
      toIdx,
      endpoint,
    }: SynthesisChunkInput): Promise<SynthesisRequestRange> {
      const items = await qaRows(db, sourceArtifactId, fromIdx, toIdx);
      const rows: PrepareRequestRow[] = [];
      for (const item of items) {
        for (const errorType of params.error_types) {
          const request = {
            messages: negativeMessages(item, templateFor(params, errorType)!, errorType, params),
            params: { temperature: params.temperature, max_tokens: params.max_tokens, seed },
          };
          for (let s = 0; s < params.samples; s++)
            rows.push({ runId, stageId, itemKey: negativeKey(item.item_key, errorType, s), endpoint: params.writer, sampleIndex: s, request });
        }
      }
      await prepareRequests(db, rows, { [params.writer]: endpoint });
      const res = await db.$client.query<{ from_id: string | null; to_id: string | null; n: string }>(
        'select min(id) as from_id, max(id) as to_id, count(*) as n from inference_requests where run_id = $1 and stage_id = $2 and item_key = any($3::text[])',
        [runId, stageId, rows.map((r) => r.itemKey)],
      );
      const r = res.rows[0]!;
      return { fromId: Number(r.from_id ?? 0), toId: Number(r.to_id ?? -1), count: Number(r.n) };
    },

    /**
     * Filters the negatives of source items [fromIdx, toIdx) and writes one `negatives` row per
     * request and one multiple-choice item per source item that keeps at least `min_negatives`.
     */
    async buildSynthesisChunk({
      runId,
      stageId,
      seed,
      params,
      sourceArtifactId,
      artifactId,
      fromIdx,
      toIdx,
      endpoint,
    }: SynthesisChunkInput): Promise<BuildSynthesisChunkOutput> {
      const items = await qaRows(db, sourceArtifactId, fromIdx, toIdx);
      const keys: string[] = [];
      for (const item of items) for (const t of params.error_types) for (let s = 0; s < params.samples; s++) keys.push(negativeKey(item.item_key, t, s));
      const results = new Map((await loadResults(db, runId, stageId, { itemKeys: keys })).map((r) => [r.itemKey, r]));
      const refusals = params.refusal_patterns.map((p) => new RegExp(p, 'i'));
      const neg = {
        item: [] as string[],
        type: [] as string[],
        sample: [] as number[],
        request: [] as number[],
        status: [] as string[],
        distance: [] as (number | null)[],
      };
      const mc = {
        key: [] as string[],
        sourceIdx: [] as number[],
        query: [] as string[],
        image: [] as (string | null)[],
        candidates: [] as string[],
        best: [] as number[],
        meta: [] as string[],
        requests: [] as string[],
      };
      let dropped = 0;
      for (const item of items) {
        const slots: { type: string; sample: number; requestId: number; text: string | null }[] = [];
        for (const type of params.error_types) {
          for (let s = 0; s < params.samples; s++) {
            const r = results.get(negativeKey(item.item_key, type, s));
            if (!r) throw new Error(`synthesize: no request row for ${negativeKey(item.item_key, type, s)}; prepare the chunk first`);
            slots.push({ type, sample: s, requestId: r.id, text: r.status === 'succeeded' ? (r.content ?? '') : null });
          }
        }
        const verdicts = filterNegatives(
          item.answer,
          slots.map((x) => x.text),
          { maxChars: params.max_chars, nearIdentical: params.near_identical, refusals },
        );
        slots.forEach((x, i) => {
          neg.item.push(item.item_key);
          neg.type.push(x.type);
          neg.sample.push(x.sample);
          neg.request.push(x.requestId);
          neg.status.push(verdicts[i]!.status);
          neg.distance.push(verdicts[i]!.distance);
        });
        const kept = slots
          .map((x, i) => ({ index: i, text: (x.text ?? '').trim(), status: verdicts[i]!.status as NegativeStatus }))
          .filter((x) => x.status === 'kept');
        if (kept.length < params.min_negatives) {
          dropped++;
          continue;
        }
        const built = assembleItem(item.answer, kept, params.k, seed, item.item_key);
        mc.key.push(item.item_key);
        mc.sourceIdx.push(item.idx);
        mc.query.push(item.question);
        mc.image.push(item.image_hash);
        mc.candidates.push(JSON.stringify(built.candidates));
        mc.best.push(built.best);
        mc.meta.push(JSON.stringify({ error_types: built.origins.map((o) => (o === null ? null : slots[o]!.type)), source_artifact: sourceArtifactId }));
        mc.requests.push(JSON.stringify(built.origins.map((o) => (o === null ? null : slots[o]!.requestId))));
      }
      await inTransaction(db, async (c) => {
        await c.query(
          `insert into negatives (run_id, stage_id, item_key, error_type, sample, request_id, endpoint, model, status, distance)
           select $1, $2, item_key, error_type, sample, request_id, $3, $4, status, distance
           from unnest($5::text[], $6::text[], $7::int[], $8::bigint[], $9::text[], $10::float8[]) as t(item_key, error_type, sample, request_id, status, distance)
           on conflict (run_id, stage_id, item_key, error_type, sample) do update set request_id = excluded.request_id, status = excluded.status, distance = excluded.distance`,
          [runId, stageId, params.writer, endpoint.model, neg.item, neg.type, neg.sample, neg.request, neg.status, neg.distance],
        );
        await c.query(
          `insert into mc_items (artifact_id, item_key, source_idx, query, image_hash, candidates, best, category, subset, meta, source_item_key, candidate_requests)
           select $1, key, source_idx, query, image, candidates, best, 'all', 'all', meta, key, requests
           from unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::jsonb[], $7::int[], $8::jsonb[], $9::jsonb[]) as t(key, source_idx, query, image, candidates, best, meta, requests)
           on conflict (artifact_id, item_key) do update set source_idx = excluded.source_idx, query = excluded.query, image_hash = excluded.image_hash,
             candidates = excluded.candidates, best = excluded.best, meta = excluded.meta, candidate_requests = excluded.candidate_requests`,
          [artifactId, mc.key, mc.sourceIdx, mc.query, mc.image, mc.candidates, mc.best, mc.meta, mc.requests],
        );
      });
      return { items: mc.key.length, dropped };
    },

    /** Numbers the items densely, hashes the content, stores the counts and seals the artifact. */
    async sealSynthesis({ runId, stageId, params, artifactId, sourceItems }: SealSynthesisInput): Promise<SealSynthesisOutput> {
      return inTransaction(db, async (c) => {
        // Two steps: dense numbers may collide with the ones being replaced.
        await c.query('update mc_items set idx = null where artifact_id = $1', [artifactId]);
        await c.query(
          `update mc_items m set idx = r.n from (select item_key, (row_number() over (order by source_idx) - 1)::int as n from mc_items where artifact_id = $1) r
           where m.artifact_id = $1 and m.item_key = r.item_key`,
          [artifactId],
        );
        const hashRes = await c.query<{ rows: string; hash: string | null }>(
          `select count(*) as rows, encode(sha256(convert_to(coalesce(string_agg(item_key || chr(31) || query || chr(31) || coalesce(image_hash, '') || chr(31) || candidates::text || chr(31) || best::text, chr(30) order by idx), ''), 'UTF8')), 'hex') as hash
           from mc_items where artifact_id = $1`,
          [artifactId],
        );
        const rows = Number(hashRes.rows[0]!.rows);
        const contentHash = hashRes.rows[0]!.hash!;
        const stats = await c.query<{ error_type: string; status: string; n: string }>(
          'select error_type, status, count(*) as n from negatives where run_id = $1 and stage_id = $2 group by error_type, status',
          [runId, stageId],
        );
        const errorTypes: Record<string, ErrorTypeStats> = {};
        for (const t of params.error_types) errorTypes[t] = { requested: 0, written: 0, kept: 0, filtered: {}, request_failed: 0 };
        for (const r of stats.rows) {
          const e = (errorTypes[r.error_type] ??= { requested: 0, written: 0, kept: 0, filtered: {}, request_failed: 0 });
          const n = Number(r.n);
          e.requested += n;
          if (r.status === 'request_failed') e.request_failed += n;
          else {
            e.written += n;
            if (r.status === 'kept') e.kept += n;
            else e.filtered[r.status] = (e.filtered[r.status] ?? 0) + n;
          }
        }
        const summary: SynthesisSummary = {
          source_items: sourceItems,
          items: rows,
          k: params.k,
          dropped: rows < sourceItems ? { [`fewer than ${params.min_negatives} kept negative(s)`]: sourceItems - rows } : {},
          error_types: errorTypes,
        };
        await c.query('update artifacts set rows = $2, content_hash = $3, summary = $4, sealed_at = coalesce(sealed_at, now()) where id = $1', [
          artifactId,
          rows,
          contentHash,
          JSON.stringify(summary),
        ]);
        return { artifactId, rows, contentHash, summary };
      });
    },
  };
}

export type SynthesizeActivities = ReturnType<typeof createSynthesizeActivities>;
