/**
 * Activities of the `distill` stage. The reject/retry loop lives in Postgres, not in memory: round
 * `a` prepares sample-index-`a` reasoning requests for the items with no accepted trace yet, the
 * rewrite passes then take the traces that passed, and `judgeDistillRound` writes one
 * `distill_attempts` row per item. Every step is a function of stored rows and cached outputs, so a
 * killed worker's retry converges on the same rows and the same accepted set.
 */
import { createHash } from 'node:crypto';
import type { Db } from '../../db/client.js';
import type { DistillParams } from '../../spec/kinds/distill.js';
import type { DatasetRef, EndpointSpec } from '../../workflows/types.js';
import { fill, isValidation, judgeReasoning, judgeRewrite } from '../distill/core.js';
import { createDistillPipeline } from '../distill/pipeline.js';
import {
  attemptRowOf,
  captionKey,
  completionOf,
  hintPatternsOf,
  loadCaptions,
  NO_IMAGE_CAPTION,
  reasonKey,
  reasonRequestRow,
  rewriteKey,
  rewriteRequestRow,
  writeAttempts,
  type ChainState,
  type McRow,
  type StageRef,
} from '../distill/steps.js';
import { labelFor, renderJudgePrompt } from '../evaluate/prompt.js';
import type { InferenceGateway } from '../inference/gateway.js';
import { loadResults, prepareRequests } from '../inference/store.js';
import type { PrepareRequestRow } from '../inference/types.js';
import { inTransaction, openStageArtifact, resolveSourceArtifact } from './artifacts.js';

export type { DistillItemsInput, DistillItemsOutput } from '../distill/pipeline.js';

export interface BeginDistillInput {
  runId: string;
  stageId: string;
  artifactId?: number;
  dataset?: DatasetRef;
}
export interface BeginDistillOutput {
  sourceArtifactId: number;
  sftArtifactId: number;
  rlArtifactId: number;
  /** Source items the stage reads (a dataset's `limit` applied). */
  items: number;
}
export type PrepareCaptionsInput = StageRef & { endpoint: EndpointSpec };
export type PrepareReasonRoundInput = StageRef & { attempt: number; endpoint: EndpointSpec };
export type PrepareRewriteRoundInput = StageRef & { attempt: number; pass: number; endpoint: EndpointSpec };
export type JudgeDistillRoundInput = StageRef & { attempt: number };
export type BuildDistillSetsInput = StageRef & { sftArtifactId: number; rlArtifactId: number };

/** The id range of the request rows just prepared (count 0: nothing to run). */
export interface DistillRequestRange {
  fromId: number;
  toId: number;
  count: number;
}
export interface JudgeDistillRoundOutput {
  tried: number;
  accepted: number;
  /** Items still without an accepted trace. */
  pending: number;
}

/** Counts a user reads about a distill stage (the `sft` artifact's summary). */
export interface DistillSummary {
  hint: boolean;
  source_items: number;
  accepted_items: number;
  /** Items whose attempts ran out, by the reason of their last rejection. */
  dropped: Record<string, number>;
  max_attempts: number;
  /** Per attempt number (1-based): traces tried and accepted. */
  attempts: Record<string, { tried: number; accepted: number }>;
  /** Per error type of the items' negatives: traces tried and accepted. */
  error_types: Record<string, { tried: number; accepted: number }>;
  /** Rejected traces by reason. */
  rejections: Record<string, number>;
  mean_trace_tokens: number;
  mean_trace_chars: number;
  requests: { caption: number; reason: number; rewrite: Record<string, number>; total: number };
  tokens: { prompt: number; completion: number };
  requests_per_accepted: number;
  tokens_per_accepted: number;
  sft: { rows: number; train: number; validation: number };
  rl: { rows: number; train: number; validation: number; items: 'all' | 'unused' };
  [key: string]: unknown;
}
export interface BuildDistillSetsOutput {
  sft: { rows: number; contentHash: string };
  rl: { rows: number; contentHash: string };
  summary: DistillSummary;
}

/**
 * The items of attempt `attempt`: no accepted trace at an earlier attempt (all items for attempt 0).
 * `not in` (item_key is never null there), not `not exists`: the planner, guessing one accepted row
 * for a run still being written, ran `not exists` as a nested loop over the run's accepted rows for
 * every item (quadratic: most of the ~0.1 s each judge and prepare step took at 2,000 items); `not
 * in` is one hashed pass over them.
 */
async function pendingItems(db: Db, r: StageRef, attempt: number): Promise<McRow[]> {
  const res = await db.$client.query<McRow>(
    `select m.item_key, m.query, m.image_hash, b.mime, m.candidates, m.best, m.meta
     from mc_items m left join blobs b on b.hash = m.image_hash
     where m.artifact_id = $1 and m.idx < $2
       and m.item_key not in (select d.item_key from distill_attempts d where d.run_id = $3 and d.stage_id = $4 and d.attempt < $5 and d.status = 'accepted')
     order by m.idx`,
    [r.sourceArtifactId, r.items, r.runId, r.stageId, attempt],
  );
  return res.rows;
}

async function rangeOf(db: Db, runId: string, stageId: string, keys: string[]): Promise<DistillRequestRange> {
  if (keys.length === 0) return { fromId: 1, toId: 0, count: 0 };
  const res = await db.$client.query<{ from_id: string | null; to_id: string | null; n: string }>(
    'select min(id) as from_id, max(id) as to_id, count(*) as n from inference_requests where run_id = $1 and stage_id = $2 and item_key = any($3::text[])',
    [runId, stageId, keys],
  );
  const r = res.rows[0]!;
  return { fromId: Number(r.from_id ?? 1), toId: Number(r.to_id ?? 0), count: Number(r.n) };
}

/** sha256 (hex) of a set's rows in order: fields joined by U+001F, rows by U+001E. */
function setHash(rows: readonly (readonly string[])[]): string {
  const h = createHash('sha256');
  rows.forEach((fields, i) => h.update(`${i > 0 ? '\u001e' : ''}${fields.join('\u001f')}`, 'utf8'));
  return h.digest('hex');
}

export function createDistillActivities({ db, gateway }: { db: Db; gateway: InferenceGateway }) {
  const labelsOf = (p: DistillParams) => p.labels;
  const captions = (r: StageRef, items: McRow[]) => loadCaptions(db, r, items);

  /** Replays the checks of attempt `attempt` over the reasoning and the first `passes` rewrite passes. */
  async function chain(r: StageRef, attempt: number, passes: number, items: McRow[]): Promise<ChainState[]> {
    const caps = await captions(r, items);
    const keys = items.flatMap((i) => [
      reasonKey(i.item_key, attempt),
      ...r.params.rewrites.slice(0, passes).map((p) => rewriteKey(i.item_key, p.name, attempt)),
    ]);
    const results = new Map((await loadResults(db, r.runId, r.stageId, { itemKeys: keys })).map((x) => [x.itemKey, x]));
    return items.map((item) => {
      const cap = item.image_hash ? caps.get(item.image_hash) : undefined;
      const requests: ChainState['requests'] = { caption: cap?.id ?? null, reason: null, rewrites: {} };
      const base = { item, requests };
      if (cap && cap.text === null) return { ...base, reason: 'request_failed', trace: '', choice: null, tokens: 0 };
      const reasonRow = results.get(reasonKey(item.item_key, attempt));
      if (!reasonRow) throw new Error(`distill: no reasoning request for ${reasonKey(item.item_key, attempt)}; prepare the round first`);
      requests.reason = reasonRow.id;
      const k = item.candidates.length;
      const v = judgeReasoning(completionOf(reasonRow), { k, best: item.best, labels: labelsOf(r.params), maxTraceTokens: r.params.max_trace_tokens });
      let state: ChainState = { ...base, reason: v.reason, trace: v.trace, choice: v.choice, tokens: v.tokens };
      for (const pass of r.params.rewrites.slice(0, passes)) {
        if (state.reason !== null) break;
        const row = results.get(rewriteKey(item.item_key, pass.name, attempt));
        if (!row) throw new Error(`distill: no rewrite request for ${rewriteKey(item.item_key, pass.name, attempt)}; prepare the pass first`);
        requests.rewrites[pass.name] = row.id;
        const w = judgeRewrite(completionOf(row), { k, best: item.best, labels: labelsOf(r.params) });
        state = { ...state, reason: w.reason, trace: w.reason === 'request_failed' ? state.trace : w.trace };
      }
      return state;
    });
  }

  return {
    ...createDistillPipeline({ db, gateway }),

    /** Resolves the mc-items source and opens (or reopens) the stage's sft-set and rl-set artifacts. */
    async beginDistill({ runId, stageId, artifactId, dataset }: BeginDistillInput): Promise<BeginDistillOutput> {
      const src = await resolveSourceArtifact(db, { artifactId, dataset, kind: 'mc-items', reader: 'distill' });
      const source = src.id;
      const open = (name: string, kind: string) => openStageArtifact(db, { runId, stageId, name, kind, parent: source });
      const items = dataset?.limit ? Math.min(dataset.limit, src.rows) : src.rows;
      return { sourceArtifactId: source, sftArtifactId: await open('sft', 'sft-set'), rlArtifactId: await open('rl', 'rl-set'), items };
    },

    /** One caption request per distinct image of the items (keyed by image hash). */
    async prepareDistillCaptions(r: PrepareCaptionsInput): Promise<DistillRequestRange> {
      const res = await db.$client.query<{ image_hash: string; mime: string | null }>(
        `select distinct m.image_hash, b.mime from mc_items m left join blobs b on b.hash = m.image_hash
         where m.artifact_id = $1 and m.idx < $2 and m.image_hash is not null order by m.image_hash`,
        [r.sourceArtifactId, r.items],
      );
      const request = (hash: string, mime: string | null) => ({
        messages: [
          {
            role: 'user' as const,
            content: [
              { type: 'image_ref' as const, hash, mime: mime ?? 'image/png' },
              { type: 'text' as const, text: r.params.caption_template },
            ],
          },
        ],
        params: { temperature: r.params.caption_temperature, max_tokens: r.params.caption_max_tokens, seed: r.seed },
      });
      const rows: PrepareRequestRow[] = res.rows.map((x) => ({
        runId: r.runId,
        stageId: r.stageId,
        itemKey: captionKey(x.image_hash),
        endpoint: r.params.captioner,
        sampleIndex: 0,
        request: request(x.image_hash, x.mime),
      }));
      await prepareRequests(db, rows, { [r.params.captioner]: r.endpoint });
      return rangeOf(
        db,
        r.runId,
        r.stageId,
        rows.map((x) => x.itemKey),
      );
    },

    /** Reasoning requests (sample index = attempt) for the items without an accepted trace. */
    async prepareDistillReasonRound(r: PrepareReasonRoundInput): Promise<DistillRequestRange> {
      const items = await pendingItems(db, r, r.attempt);
      const caps = await captions(r, items);
      const rows: PrepareRequestRow[] = [];
      for (const item of items) {
        const cap = item.image_hash ? caps.get(item.image_hash) : { text: NO_IMAGE_CAPTION, id: 0 };
        if (!cap || cap.text === null) continue; // judged request_failed: nothing to send
        rows.push(reasonRequestRow(r, item, cap.text, r.attempt));
      }
      await prepareRequests(db, rows, { [r.params.reasoner]: r.endpoint });
      return rangeOf(
        db,
        r.runId,
        r.stageId,
        rows.map((x) => x.itemKey),
      );
    },

    /** Rewrite pass `pass` of attempt `attempt` over the traces that passed every earlier check. */
    async prepareDistillRewriteRound(r: PrepareRewriteRoundInput): Promise<DistillRequestRange> {
      const pass = r.params.rewrites[r.pass]!;
      const states = await chain(r, r.attempt, r.pass, await pendingItems(db, r, r.attempt));
      const rows = states.filter((s) => s.reason === null).map((s) => rewriteRequestRow(r, r.pass, s.item, s.trace, r.attempt));
      await prepareRequests(db, rows, { [pass.endpoint]: r.endpoint });
      return rangeOf(
        db,
        r.runId,
        r.stageId,
        rows.map((x) => x.itemKey),
      );
    },

    /** The verdict of every pending item's attempt: one `distill_attempts` row each. */
    async judgeDistillRound(r: JudgeDistillRoundInput): Promise<JudgeDistillRoundOutput> {
      const items = await pendingItems(db, r, r.attempt);
      const states = await chain(r, r.attempt, r.params.rewrites.length, items);
      const patterns = hintPatternsOf(r.params);
      const rows = states.map((s) => attemptRowOf(r, r.attempt, s, patterns));
      await writeAttempts(db, r, rows);
      const accepted = rows.filter((x) => x.status === 'accepted').length;
      return { tried: rows.length, accepted, pending: rows.length - accepted };
    },

    /** Writes the sft-set and rl-set rows, computes the statistics and seals both artifacts. */
    async buildDistillSets(r: BuildDistillSetsInput): Promise<BuildDistillSetsOutput> {
      const { params, seed } = r;
      const items = (
        await db.$client.query<McRow & { idx: number }>(
          `select m.idx, m.item_key, m.query, m.image_hash, null as mime, m.candidates, m.best, m.meta from mc_items m
           where m.artifact_id = $1 and m.idx < $2 order by m.idx`,
          [r.sourceArtifactId, r.items],
        )
      ).rows;
      const attempts = (
        await db.$client.query<{
          item_key: string;
          attempt: number;
          status: string;
          trace: string;
          trace_hash: string | null;
          trace_tokens: number;
          requests: { reason: number | null };
          error_types: string[];
        }>(
          'select item_key, attempt, status, trace, trace_hash, trace_tokens, requests, error_types from distill_attempts where run_id = $1 and stage_id = $2 order by item_key, attempt',
          [r.runId, r.stageId],
        )
      ).rows;
      const acceptedBy = new Map(attempts.filter((a) => a.status === 'accepted').map((a) => [a.item_key, a]));
      const lastBy = new Map<string, (typeof attempts)[number]>();
      for (const a of attempts) lastBy.set(a.item_key, a);

      const sft = {
        key: [] as string[],
        image: [] as (string | null)[],
        prompt: [] as string[],
        response: [] as string[],
        answer: [] as string[],
        split: [] as string[],
        hash: [] as string[],
        attempt: [] as number[],
        request: [] as (number | null)[],
      };
      const rl = {
        key: [] as string[],
        image: [] as (string | null)[],
        prompt: [] as string[],
        question: [] as string[],
        options: [] as string[],
        answer: [] as string[],
        split: [] as string[],
      };
      for (const item of items) {
        const label = labelFor(item.best, params.labels);
        const prompt = renderJudgePrompt({ template: params.judge_template, query: item.query, candidates: item.candidates, labels: params.labels });
        const split = isValidation(seed, item.item_key, params.validation_fraction) ? 'validation' : 'train';
        const acc = acceptedBy.get(item.item_key);
        if (acc) {
          sft.key.push(item.item_key);
          sft.image.push(item.image_hash);
          sft.prompt.push(prompt);
          sft.response.push(fill(params.answer_template, { trace: acc.trace, label }));
          sft.answer.push(label);
          sft.split.push(split);
          sft.hash.push(acc.trace_hash!);
          sft.attempt.push(acc.attempt);
          sft.request.push(acc.requests.reason);
        }
        if (params.rl_items === 'all' || !acc) {
          rl.key.push(item.item_key);
          rl.image.push(item.image_hash);
          rl.prompt.push(prompt);
          rl.question.push(item.query);
          rl.options.push(JSON.stringify(item.candidates));
          rl.answer.push(label);
          rl.split.push(split);
        }
      }

      // Statistics.
      const summaryAttempts: DistillSummary['attempts'] = {};
      const errorTypes: DistillSummary['error_types'] = {};
      const rejections: Record<string, number> = {};
      for (const a of attempts) {
        const at = (summaryAttempts[String(a.attempt + 1)] ??= { tried: 0, accepted: 0 });
        at.tried++;
        if (a.status === 'accepted') at.accepted++;
        else rejections[a.status] = (rejections[a.status] ?? 0) + 1;
        for (const t of a.error_types) {
          const e = (errorTypes[t] ??= { tried: 0, accepted: 0 });
          e.tried++;
          if (a.status === 'accepted') e.accepted++;
        }
      }
      const dropped: Record<string, number> = {};
      for (const item of items) {
        if (acceptedBy.has(item.item_key)) continue;
        const last = lastBy.get(item.item_key);
        const why = `attempts spent (last: ${last?.status ?? 'none'})`;
        dropped[why] = (dropped[why] ?? 0) + 1;
      }
      const acceptedList = [...acceptedBy.values()];
      const usage = (
        await db.$client.query<{ kind: string; n: string; pt: string; ct: string }>(
          `select case when q.item_key like 'caption|%' then 'caption' when q.item_key like '%|reason|a%' then 'reason' else 'rw:' || split_part(split_part(q.item_key, '|rw:', 2), '|', 1) end as kind,
                  count(*) as n, coalesce(sum(r.prompt_tokens), 0) as pt, coalesce(sum(r.completion_tokens), 0) as ct
           from inference_requests q left join inference_results r on r.request_id = q.id
           where q.run_id = $1 and q.stage_id = $2 group by 1`,
          [r.runId, r.stageId],
        )
      ).rows;
      const requests: DistillSummary['requests'] = { caption: 0, reason: 0, rewrite: {}, total: 0 };
      const tokens = { prompt: 0, completion: 0 };
      for (const u of usage) {
        const n = Number(u.n);
        if (u.kind === 'caption') requests.caption = n;
        else if (u.kind === 'reason') requests.reason = n;
        else requests.rewrite[u.kind.slice(3)] = n;
        requests.total += n;
        tokens.prompt += Number(u.pt);
        tokens.completion += Number(u.ct);
      }
      const per = (x: number) => (acceptedList.length > 0 ? x / acceptedList.length : 0);
      const count = (split: string[], s: string) => split.filter((x) => x === s).length;
      const summary: DistillSummary = {
        hint: params.hint,
        source_items: items.length,
        accepted_items: acceptedList.length,
        dropped,
        max_attempts: params.max_attempts,
        attempts: summaryAttempts,
        error_types: errorTypes,
        rejections,
        mean_trace_tokens: per(acceptedList.reduce((s, a) => s + a.trace_tokens, 0)),
        mean_trace_chars: per(acceptedList.reduce((s, a) => s + a.trace.length, 0)),
        requests,
        tokens,
        requests_per_accepted: per(requests.total),
        tokens_per_accepted: per(tokens.prompt + tokens.completion),
        sft: { rows: sft.key.length, train: count(sft.split, 'train'), validation: count(sft.split, 'validation') },
        rl: { rows: rl.key.length, train: count(rl.split, 'train'), validation: count(rl.split, 'validation'), items: params.rl_items },
      };

      // The same digest Postgres would compute over the rows in idx order (fields joined by U+001F,
      // rows by U+001E), computed from the arrays written instead of read back.
      const sftHash = setHash(sft.key.map((k, i) => [k, sft.image[i] ?? '', sft.prompt[i]!, sft.response[i]!, sft.split[i]!]));
      const rlHash = setHash(rl.key.map((k, i) => [k, rl.image[i] ?? '', rl.prompt[i]!, rl.answer[i]!, rl.split[i]!]));
      type Client = Pick<Db['$client'], 'query'>;
      const insertSft = (c: Client, from: number, to: number) =>
        c.query(
          `insert into sft_rows (artifact_id, idx, item_key, image_hash, prompt, response, answer, split, trace_hash, attempt, source_artifact_id, reason_request_id)
           select $1, $12 + (ord - 1)::int, key, image, prompt, response, answer, split, hash, attempt, $2, request
           from unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::int[], $11::bigint[])
             with ordinality as t(key, image, prompt, response, answer, split, hash, attempt, request, ord)`,
          [
            r.sftArtifactId,
            r.sourceArtifactId,
            ...[sft.key, sft.image, sft.prompt, sft.response, sft.answer, sft.split, sft.hash, sft.attempt, sft.request].map((a) => a.slice(from, to)),
            from,
          ],
        );
      const insertRl = (c: Client) =>
        c.query(
          `insert into rl_rows (artifact_id, idx, item_key, image_hash, prompt, question, options, answer, split, source_artifact_id)
           select $1, (ord - 1)::int, key, image, prompt, question, options, answer, split, $2
           from unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::text[], $9::text[])
             with ordinality as t(key, image, prompt, question, options, answer, split, ord)`,
          [r.rlArtifactId, r.sourceArtifactId, rl.key, rl.image, rl.prompt, rl.question, rl.options, rl.answer, rl.split],
        );
      const seal = async (c: Client) => {
        const sql = 'update artifacts set rows = $2, content_hash = $3, summary = $4, sealed_at = coalesce(sealed_at, now()) where id = $1';
        await c.query(sql, [r.sftArtifactId, sft.key.length, sftHash, JSON.stringify(summary)]);
        await c.query(sql, [r.rlArtifactId, rl.key.length, rlHash, JSON.stringify(summary.rl)]);
      };
      const out = { sft: { rows: sft.key.length, contentHash: sftHash }, rl: { rows: rl.key.length, contentHash: rlHash }, summary };

      const sealed = (await db.$client.query<{ sealed: boolean }>('select sealed_at is not null as sealed from artifacts where id = $1', [r.sftArtifactId]))
        .rows[0]?.sealed;
      if (sealed) {
        // Sealed by an earlier attempt: readers may be reading it, so its rows change in one transaction.
        return inTransaction(db, async (c) => {
          await c.query('delete from sft_rows where artifact_id = $1', [r.sftArtifactId]);
          await c.query('delete from rl_rows where artifact_id = $1', [r.rlArtifactId]);
          await insertSft(c, 0, sft.key.length);
          await insertRl(c);
          await seal(c);
          return out;
        });
      }
      // Not sealed yet, so nobody reads these rows: written over three connections at once (the
      // sets are most of the stage's last step), then sealed. A retry starts by clearing them.
      await Promise.all([
        db.$client.query('delete from sft_rows where artifact_id = $1', [r.sftArtifactId]),
        db.$client.query('delete from rl_rows where artifact_id = $1', [r.rlArtifactId]),
      ]);
      const half = Math.ceil(sft.key.length / 2);
      await Promise.all([insertSft(db.$client, 0, half), insertSft(db.$client, half, sft.key.length), insertRl(db.$client)]);
      await inTransaction(db, seal);
      return out;
    },
  };
}

export type DistillActivities = ReturnType<typeof createDistillActivities>;
