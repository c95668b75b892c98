/**
 * Activities of the `sweep` stage: open the curve artifact; per chunk of questions, write the
 * policy's pool requests, then grading rounds (LLM grader retries), then selection rounds (the
 * judge requests the strategies still need); finally compute the curve. A round writes request
 * rows (never payloads through Temporal) and returns their id range; the workflow runs them
 * through the gateway and asks again until nothing is needed. State lives in Postgres: a retried
 * or resumed activity recomputes the same needs from the same rows.
 */
import type { Db } from '../../db/client.js';
import { graderOf, nMaxOf, strategiesOf, type SweepParams } from '../../spec/kinds/sweep.js';
import type { DatasetRef, EndpointSpec } from '../../workflows/types.js';
import { parseChoice } from '../evaluate/parse.js';
import { loadResults, prepareRequests, type RequestResult } from '../inference/store.js';
import type { PreparedMessage, PrepareRequestRow, PreparedRequest } from '../inference/types.js';
import { computeCurve, type CurvePoint, type QuestionOutcomes, type ReplicateOutcome } from '../sweep/curve.js';
import { extractFinalAnswer, gradeByRule, graderTemperature, mmvetGraderPrompt, normalizeAnswer, parseGraderScore } from '../sweep/graders.js';
import { parseScore, renderPolicyPrompt, renderScorePrompt, renderSelectPrompt } from '../sweep/prompts.js';
import { candidateSets, select, type JudgeRequest, type Verdict } from '../sweep/selection.js';
import { openStageArtifact, qaRows, resolveSourceArtifact, type QaRow } from './artifacts.js';

export interface BeginSweepInput {
  runId: string;
  stageId: string;
  /** The qa-items source: an artifact id, or a file dataset (imported here in plans from before artifacts). */
  artifactId?: number;
  dataset?: DatasetRef;
}
export interface BeginSweepOutput {
  sourceArtifactId: number;
  /** The stage's curve artifact (open until sealed). */
  artifactId: number;
  /** Questions the stage reads (a dataset's `limit` applied). */
  questions: number;
}
export interface SweepChunkInput {
  runId: string;
  stageId: string;
  seed: number;
  params: SweepParams;
  sourceArtifactId: number;
  /** Question index range [fromIdx, toIdx). */
  fromIdx: number;
  toIdx: number;
  endpoints: Record<string, EndpointSpec>;
}
/** Rows a round wrote or left unfinished, on one endpoint; count 0: the phase is complete. */
export interface SweepRound {
  endpoint: string;
  fromId: number;
  toId: number;
  count: number;
}
export interface SealSweepInput {
  runId: string;
  stageId: string;
  seed: number;
  params: SweepParams;
  sourceArtifactId: number;
  artifactId: number;
  questions: number;
  endpoints: Record<string, EndpointSpec>;
}
/** Requests of one role: rows in the stage, and how many of them the cache answered. */
export interface RoleRequests {
  rows: number;
  cached: number;
  failed: number;
}
export interface SweepSummary {
  questions: number;
  n: number[];
  n_max: number;
  resamples: number;
  strategies: string[];
  grader: string;
  requests: { policy: RoleRequests; judge: RoleRequests; grader: RoleRequests };
  points: CurvePoint[];
  [key: string]: unknown;
}
export interface SealSweepOutput {
  artifactId: number;
  points: number;
  requests: SweepSummary['requests'];
}

/** Item keys of the stage's requests: `<question>|p|s<sample>`, `<question>|g|s<sample>|r<run>|a<attempt>`, `<question>|j|<judge key>`. */
export const policyKey = (q: string, s: number) => `${q}|p|s${s}`;
export const graderKey = (q: string, s: number, run: number, attempt: number) => `${q}|g|s${s}|r${run}|a${attempt}`;
export const judgeKey = (q: string, key: string) => `${q}|j|${key}`;

function userMessage(item: QaRow, text: string, withImage: boolean): PreparedMessage {
  return {
    role: 'user',
    content: [
      ...(withImage && item.image_hash ? [{ type: 'image_ref' as const, hash: item.image_hash, mime: item.mime ?? 'image/png' }] : []),
      { type: 'text' as const, text },
    ],
  };
}

/** The capabilities a question is tagged with (MM-Vet: `meta.capability`). */
function capabilitiesOf(meta: Record<string, unknown>): string[] {
  const c = meta.capability ?? meta.capabilities;
  if (Array.isArray(c)) return c.filter((x): x is string => typeof x === 'string');
  return typeof c === 'string' && c !== '' ? [c] : [];
}

const stripThink = (s: string) => s.replace(/<think>[\s\S]*?<\/think>/gi, '').trim();

/**
 * Writes the rows not yet in the stage and returns the range of the rows among `keys` that have
 * no result yet (new or left unfinished by an interrupted round).
 */
async function writeRound(
  db: Db,
  rows: PrepareRequestRow[],
  endpoints: Record<string, EndpointSpec>,
  endpoint: string,
  runId: string,
  stageId: string,
  unfinished: string[] = [],
): Promise<SweepRound> {
  if (rows.length === 0 && unfinished.length === 0) return { endpoint, fromId: 1, toId: 0, count: 0 };
  if (rows.length > 0) await prepareRequests(db, rows, endpoints);
  const res = await db.$client.query<{ from_id: string | null; to_id: string | null; n: string }>(
    `select min(q.id) as from_id, max(q.id) as to_id, count(*) as n from inference_requests q
     where q.run_id = $1 and q.stage_id = $2 and q.item_key = any($3::text[])
       and not exists (select 1 from inference_results r where r.request_id = q.id)`,
    [runId, stageId, [...rows.map((r) => r.itemKey), ...unfinished]],
  );
  const r = res.rows[0]!;
  return { endpoint, fromId: Number(r.from_id ?? 1), toId: Number(r.to_id ?? 0), count: Number(r.n) };
}

interface PoolSample {
  requestId: number;
  /** The output (think blocks removed), or null when the request failed. */
  text: string | null;
}

async function loadPool(db: Db, runId: string, stageId: string, items: readonly QaRow[], nMax: number): Promise<Map<string, PoolSample[]>> {
  const keys = items.flatMap((it) => Array.from({ length: nMax }, (_, s) => policyKey(it.item_key, s)));
  const results = new Map((await loadResults(db, runId, stageId, { itemKeys: keys })).map((r) => [r.itemKey, r]));
  const pool = new Map<string, PoolSample[]>();
  for (const it of items) {
    pool.set(
      it.item_key,
      Array.from({ length: nMax }, (_, s) => {
        const r = results.get(policyKey(it.item_key, s));
        if (!r || r.status === 'pending') throw new Error(`sweep: policy request ${policyKey(it.item_key, s)} has no result; run the pool first`);
        return { requestId: r.id, text: r.status === 'succeeded' ? stripThink(r.content ?? '') : null };
      }),
    );
  }
  return pool;
}

function parseVerdict(key: string, r: RequestResult): Verdict {
  const content = r.status === 'succeeded' ? (r.content ?? '') : null;
  if (key.startsWith('score:')) return { score: content === null ? null : (parseScore(content) ?? null) };
  const k = key.slice(3).split(',').length;
  return { position: content === null ? null : parseChoice(content, k, 'letters').position };
}

export function createSweepActivities({ db }: { db: Db }) {
  return {
    /** Resolves the qa-items source and opens (or reopens) the stage's curve artifact. */
    async beginSweep({ runId, stageId, artifactId, dataset }: BeginSweepInput): Promise<BeginSweepOutput> {
      const src = await resolveSourceArtifact(db, { artifactId, dataset, kind: 'qa-items', reader: 'sweep' });
      const source = src.id;
      const id = await openStageArtifact(db, { runId, stageId, name: 'curve', kind: 'curve', parent: source });
      return { sourceArtifactId: source, artifactId: id, questions: dataset?.limit ? Math.min(dataset.limit, src.rows) : src.rows };
    },

    /** The pool: n_max samples of every question of the chunk (one request body per question, sample index 0..n_max-1). */
    async prepareSweepPool({ runId, stageId, seed, params, sourceArtifactId, fromIdx, toIdx, endpoints }: SweepChunkInput): Promise<SweepRound> {
      const items = await qaRows(db, sourceArtifactId, fromIdx, toIdx);
      const nMax = nMaxOf(params);
      const rows: PrepareRequestRow[] = [];
      for (const it of items) {
        const request: PreparedRequest = {
          messages: [
            ...(params.system ? [{ role: 'system' as const, content: params.system }] : []),
            userMessage(it, renderPolicyPrompt(params.policy_template, it.question), true),
          ],
          params: { temperature: params.policy_temperature, max_tokens: params.policy_max_tokens, seed },
        };
        for (let s = 0; s < nMax; s++) rows.push({ runId, stageId, itemKey: policyKey(it.item_key, s), endpoint: params.policy, sampleIndex: s, request });
      }
      return writeRound(db, rows, endpoints, params.policy, runId, stageId);
    },

    /**
     * Grades the chunk's pool. Rule graders score at once. The LLM grader goes round by round: a
     * grade's first attempt at temperature 0, each unreadable reply retried warmer, 0.0 after
     * `max_attempts`; the scores (mean over `num_runs`) are written once no attempt is pending.
     */
    async gradeSweepChunk({ runId, stageId, seed, params, sourceArtifactId, fromIdx, toIdx, endpoints }: SweepChunkInput): Promise<SweepRound> {
      const items = await qaRows(db, sourceArtifactId, fromIdx, toIdx);
      const nMax = nMaxOf(params);
      const pool = await loadPool(db, runId, stageId, items, nMax);
      const grader = graderOf(params);
      const out = {
        item: [] as string[],
        sample: [] as number[],
        request: [] as number[],
        answer: [] as string[],
        grade: [] as number[],
        detail: [] as (string | null)[],
      };
      const push = (q: string, s: number, p: PoolSample, grade: number, detail: unknown) => {
        out.item.push(q);
        out.sample.push(s);
        out.request.push(p.requestId);
        out.answer.push(p.text === null ? '' : normalizeAnswer(extractFinalAnswer(p.text)));
        out.grade.push(grade);
        out.detail.push(detail === null ? null : JSON.stringify(detail));
      };
      if (grader.kind !== 'llm') {
        for (const it of items)
          pool
            .get(it.item_key)!
            .forEach((p, s) => push(it.item_key, s, p, p.text === null ? 0 : gradeByRule(grader, extractFinalAnswer(p.text), it.answer), null));
      } else {
        const keys: string[] = [];
        for (const it of items)
          for (let s = 0; s < nMax; s++)
            for (let run = 0; run < grader.num_runs; run++) for (let a = 0; a < grader.max_attempts; a++) keys.push(graderKey(it.item_key, s, run, a));
        const results = new Map((await loadResults(db, runId, stageId, { itemKeys: keys })).map((r) => [r.itemKey, r]));
        const rows: PrepareRequestRow[] = [];
        for (const it of items) {
          pool.get(it.item_key)!.forEach((p, s) => {
            if (p.text === null) return push(it.item_key, s, p, 0, { runs: [], attempts: [] });
            const runs: (number | null)[] = [];
            const attempts: number[] = [];
            for (let run = 0; run < grader.num_runs; run++) {
              let score: number | null | undefined = null;
              let a = 0;
              for (; a < grader.max_attempts; a++) {
                const r = results.get(graderKey(it.item_key, s, run, a));
                if (!r || r.status === 'pending') {
                  const request: PreparedRequest = {
                    messages: [{ role: 'user', content: mmvetGraderPrompt(it.question, it.answer, p.text) }],
                    params: { temperature: graderTemperature(a, grader.retry_temperature_step), max_tokens: grader.max_tokens, seed },
                  };
                  rows.push({ runId, stageId, itemKey: graderKey(it.item_key, s, run, a), endpoint: grader.endpoint, sampleIndex: run, request });
                  score = undefined;
                  break;
                }
                const v = r.status === 'succeeded' ? parseGraderScore(r.content ?? '') : undefined;
                if (v !== undefined) {
                  score = v;
                  break;
                }
              }
              if (score === undefined) continue;
              runs.push(score);
              attempts.push(Math.min(a + 1, grader.max_attempts));
            }
            if (runs.length === grader.num_runs) push(it.item_key, s, p, runs.reduce<number>((acc, x) => acc + (x ?? 0), 0) / runs.length, { runs, attempts });
          });
        }
        if (rows.length > 0) return writeRound(db, rows, endpoints, grader.endpoint, runId, stageId);
      }
      await db.$client.query(
        `insert into sweep_samples (run_id, stage_id, item_key, sample, request_id, answer, grade, grade_detail)
         select $1, $2, * from unnest($3::text[], $4::int[], $5::bigint[], $6::text[], $7::float8[], $8::jsonb[])
         on conflict (run_id, stage_id, item_key, sample) do update set request_id = excluded.request_id, answer = excluded.answer, grade = excluded.grade, grade_detail = excluded.grade_detail`,
        [runId, stageId, out.item, out.sample, out.request, out.answer, out.grade, out.detail],
      );
      return { endpoint: grader.kind === 'llm' ? grader.endpoint : params.policy, fromId: 1, toId: 0, count: 0 };
    },

    /**
     * One selection round of the chunk: runs every (question, N, replicate, strategy) selection on
     * the verdicts known so far; writes the judge requests still needed (each distinct prompt once)
     * and returns their range, or, when none is needed, writes the selections and returns count 0.
     */
    async selectSweepChunk({ runId, stageId, seed, params, sourceArtifactId, fromIdx, toIdx, endpoints }: SweepChunkInput): Promise<SweepRound> {
      const items = await qaRows(db, sourceArtifactId, fromIdx, toIdx);
      const nMax = nMaxOf(params);
      const strategies = strategiesOf(params);
      const judge = params.judge ?? params.policy;
      const pool = await loadPool(db, runId, stageId, items, nMax);
      const samples = await db.$client.query<{ item_key: string; sample: number; answer: string; grade: number }>(
        'select item_key, sample, answer, grade from sweep_samples where run_id = $1 and stage_id = $2 and item_key = any($3::text[])',
        [runId, stageId, items.map((i) => i.item_key)],
      );
      const answers = new Map<string, string[]>();
      const grades = new Map<string, number[]>();
      for (const r of samples.rows) {
        (answers.get(r.item_key) ?? answers.set(r.item_key, []).get(r.item_key)!)[r.sample] = r.answer;
        (grades.get(r.item_key) ?? grades.set(r.item_key, []).get(r.item_key)!)[r.sample] = r.grade;
      }
      for (const it of items)
        if ((grades.get(it.item_key)?.filter((g) => g !== undefined).length ?? 0) !== nMax)
          throw new Error(`sweep: question ${it.item_key} is not fully graded; grade the chunk first`);

      const verdicts = new Map<string, Verdict>();
      for (let pass = 0; ; pass++) {
        const needs = new Map<string, { item: QaRow; req: JudgeRequest }>();
        const chosen: { item: string; strategy: string; n: number; rep: number; sample: number; calls: string[] }[] = [];
        for (const it of items) {
          const ctx = {
            seed,
            question: it.item_key,
            answers: answers.get(it.item_key)!,
            grades: grades.get(it.item_key)!,
            verdict: (key: string) => verdicts.get(judgeKey(it.item_key, key)),
          };
          for (const n of params.n) {
            candidateSets(seed, it.item_key, n, nMax, n === nMax ? 0 : params.resamples).forEach((set, rep) => {
              for (const st of strategies) {
                const r = select(st, set, ctx);
                if (r.status === 'needs') for (const req of r.requests) needs.set(judgeKey(it.item_key, req.key), { item: it, req });
                else if (r.status === 'done') chosen.push({ item: it.item_key, strategy: st.name, n, rep, sample: r.sample, calls: r.calls });
              }
            });
          }
        }
        if (needs.size === 0) {
          await db.$client.query(
            `insert into sweep_selections (run_id, stage_id, item_key, strategy, n, replicate, sample, calls)
             select $1, $2, * from unnest($3::text[], $4::text[], $5::int[], $6::int[], $7::int[], $8::jsonb[])
             on conflict (run_id, stage_id, item_key, strategy, n, replicate) do update set sample = excluded.sample, calls = excluded.calls`,
            [
              runId,
              stageId,
              chosen.map((c) => c.item),
              chosen.map((c) => c.strategy),
              chosen.map((c) => c.n),
              chosen.map((c) => c.rep),
              chosen.map((c) => c.sample),
              chosen.map((c) => JSON.stringify(c.calls)),
            ],
          );
          return { endpoint: judge, fromId: 1, toId: 0, count: 0 };
        }
        // Verdicts of requests made in earlier rounds unlock the next step without a round trip.
        const known = await loadResults(db, runId, stageId, { itemKeys: [...needs.keys()] });
        let learned = 0;
        for (const r of known) {
          if (r.status === 'pending') continue;
          const key = r.itemKey.slice(r.itemKey.indexOf('|j|') + 3);
          verdicts.set(r.itemKey, parseVerdict(key, r));
          needs.delete(r.itemKey);
          learned++;
        }
        if (learned > 0 && needs.size === 0) continue;
        const rows: PrepareRequestRow[] = [];
        for (const [itemKey, { item, req }] of needs) {
          const texts = pool.get(item.item_key)!.map((p) => p.text ?? '(no answer)');
          const text =
            req.kind === 'mc'
              ? renderSelectPrompt(
                  params.select_template,
                  item.question,
                  req.order.map((s) => texts[s]!),
                )
              : renderScorePrompt(params.score_template, item.question, texts[req.sample]!);
          rows.push({
            runId,
            stageId,
            itemKey,
            endpoint: judge,
            sampleIndex: 0,
            request: {
              messages: [userMessage(item, text, true)],
              params: { temperature: params.judge_temperature, max_tokens: params.judge_max_tokens, seed },
            },
          });
        }
        // Pending rows (an interrupted round) are run again together with the new ones.
        const pending = known.filter((r) => r.status === 'pending').map((r) => r.itemKey);
        if (rows.length === 0 && pending.length === 0) continue;
        return writeRound(db, rows, endpoints, judge, runId, stageId, pending);
      }
    },

    /** The curve from the selections and grades: points with CIs and costs in `curve_points`, the summary on the artifact, sealed. */
    async sealSweep({ runId, stageId, seed, params, sourceArtifactId, artifactId, questions, endpoints }: SealSweepInput): Promise<SealSweepOutput> {
      const nMax = nMaxOf(params);
      const strategies = strategiesOf(params);
      const items = await qaRows(db, sourceArtifactId, 0, questions);
      const tokensOf = async (pattern: string) =>
        new Map(
          (
            await db.$client.query<{ item_key: string; pt: number | null; ct: number | null; status: string | null; cached: boolean | null }>(
              `select q.item_key, c.prompt_tokens as pt, c.completion_tokens as ct, r.status, r.cached from inference_requests q
               left join inference_results r on r.request_id = q.id left join inference_cache c on c.key = q.cache_key and r.status = 'succeeded'
               where q.run_id = $1 and q.stage_id = $2 and position($3 in q.item_key) > 0`,
              [runId, stageId, pattern],
            )
          ).rows.map((r) => [r.item_key, r]),
        );
      const policyRows = await tokensOf('|p|s');
      const judgeRows = await tokensOf('|j|');
      const graderRows = await tokensOf('|g|s');
      const priceOf = (name: string | undefined) => (name ? endpoints[name]?.price : undefined);
      const cost = (pt: number, ct: number, price: { input_per_mtok: number; output_per_mtok: number } | undefined) =>
        price ? (pt * price.input_per_mtok + ct * price.output_per_mtok) / 1e6 : 0;
      const pPrice = priceOf(params.policy);
      const jPrice = priceOf(params.judge);

      const samples = await db.$client.query<{ item_key: string; sample: number; grade: number }>(
        'select item_key, sample, grade from sweep_samples where run_id = $1 and stage_id = $2',
        [runId, stageId],
      );
      const grade = new Map(samples.rows.map((r) => [`${r.item_key}#${r.sample}`, r.grade]));
      const selections = await db.$client.query<{ item_key: string; strategy: string; n: number; replicate: number; sample: number; calls: string[] }>(
        'select item_key, strategy, n, replicate, sample, calls from sweep_selections where run_id = $1 and stage_id = $2',
        [runId, stageId],
      );
      const byQuestion = new Map<string, typeof selections.rows>();
      for (const r of selections.rows) (byQuestion.get(r.item_key) ?? byQuestion.set(r.item_key, []).get(r.item_key)!).push(r);

      const outcomes: QuestionOutcomes[] = items.map((it) => {
        const points = new Map<string, ReplicateOutcome[]>();
        const setsByN = new Map(params.n.map((n) => [n, candidateSets(seed, it.item_key, n, nMax, n === nMax ? 0 : params.resamples)]));
        for (const sel of byQuestion.get(it.item_key) ?? []) {
          const set = setsByN.get(sel.n)?.[sel.replicate];
          if (!set) continue; // a selection of an N no longer in the spec
          let pt = 0;
          let ct = 0;
          for (const s of set) {
            const r = policyRows.get(policyKey(it.item_key, s));
            pt += r?.pt ?? 0;
            ct += r?.ct ?? 0;
          }
          let jpt = 0;
          let jct = 0;
          for (const c of sel.calls) {
            const r = judgeRows.get(judgeKey(it.item_key, c));
            jpt += r?.pt ?? 0;
            jct += r?.ct ?? 0;
          }
          const key = `${sel.strategy}|${sel.n}`;
          const list = points.get(key) ?? points.set(key, []).get(key)!;
          list[sel.replicate] = {
            grade: grade.get(`${it.item_key}#${sel.sample}`) ?? 0,
            judgeCalls: sel.calls.length,
            tokens: pt + ct + jpt + jct,
            costUsd: cost(pt, ct, pPrice) + cost(jpt, jct, jPrice),
          };
        }
        return { capabilities: capabilitiesOf(it.meta), points };
      });
      const points = computeCurve({
        strategies: strategies.map((s) => s.name),
        ns: [...params.n].sort((a, b) => a - b),
        questions: outcomes,
        bootstrap: params.bootstrap,
        seed,
      });
      const role = (m: Map<string, { status: string | null; cached: boolean | null }>): RoleRequests => {
        let rows = 0;
        let cached = 0;
        let failed = 0;
        for (const r of m.values()) {
          rows++;
          if (r.status === 'succeeded' && r.cached) cached++;
          if (r.status === 'failed') failed++;
        }
        return { rows, cached, failed };
      };
      const g = graderOf(params);
      const summary: SweepSummary = {
        questions,
        n: [...params.n].sort((a, b) => a - b),
        n_max: nMax,
        resamples: params.resamples,
        strategies: strategies.map((s) => s.name),
        grader:
          g.kind === 'llm'
            ? `llm (${g.endpoint}, ${g.num_runs} run${g.num_runs > 1 ? 's' : ''})`
            : g.kind === 'numeric'
              ? `numeric (±${g.tolerance}${g.relative ? ' relative' : ''})`
              : g.kind,
        requests: { policy: role(policyRows), judge: role(judgeRows), grader: role(graderRows) },
        points,
      };
      const client = await db.$client.connect();
      try {
        await client.query('begin');
        await client.query('delete from curve_points where artifact_id = $1', [artifactId]);
        await client.query(
          `insert into curve_points (artifact_id, strategy, n, capability, questions, score, ci_low, ci_high, policy_samples, judge_calls, tokens, cost_usd)
           select $1, * from unnest($2::text[], $3::int[], $4::text[], $5::int[], $6::float8[], $7::float8[], $8::float8[], $9::int[], $10::float8[], $11::float8[], $12::float8[])`,
          [
            artifactId,
            points.map((p) => p.strategy),
            points.map((p) => p.n),
            points.map((p) => p.capability),
            points.map((p) => p.questions),
            points.map((p) => p.score),
            points.map((p) => p.ciLow),
            points.map((p) => p.ciHigh),
            points.map((p) => p.policySamples),
            points.map((p) => p.judgeCalls),
            points.map((p) => p.tokens),
            points.map((p) => p.costUsd),
          ],
        );
        await client.query(
          `update artifacts set rows = $2, summary = $3, content_hash = encode(sha256(convert_to($4, 'UTF8')), 'hex'), sealed_at = coalesce(sealed_at, now()) where id = $1`,
          [artifactId, points.length, JSON.stringify(summary), JSON.stringify(points)],
        );
        await client.query('commit');
      } catch (err) {
        await client.query('rollback').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
      return { artifactId, points: points.length, requests: summary.requests };
    },
  };
}

export type SweepActivities = ReturnType<typeof createSweepActivities>;
