/**
 * Where the simulated judge learns the right answer: a JSONL truth file whose lines are either
 * VL-RewardBench records (`response: [a, b]`, `human_ranking: [0, 1]` — the index holding the
 * lowest rank, 0, is the best) or generic items `{ "candidates": [...], "best": 0 }`.
 *
 * `locateCandidates` finds which truth item a prompt presents and at which positions: every
 * candidate is indexed by the first 40 characters of its trimmed text; the prompt is probed at
 * each line start and right after a short label prefix on that line (`A:`, `B)`, `[[A]]`,
 * `Response 2.`, `<response_a>`…); a probe is confirmed by `startsWith` of the whole trimmed
 * candidate. Matches are grouped by item; the item with the most matched candidates (≥ 2; ties go
 * to the longer matched text, then the earlier item) wins, and a candidate's position is the rank
 * of its offset among that item's matches. A candidate seen twice counts at its last occurrence
 * (MMMU-style queries quote the options before the responses repeat them). A candidate shorter
 * than 40 chars only counts where it ends its line ("3" is not found in "3 apples").
 */
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';

export interface TruthItem {
  id: string;
  candidates: string[];
  /** Index into `candidates` of the best one. */
  best: number;
}

interface Entry {
  item: number;
  cand: number;
  text: string;
}

export interface TruthIndex {
  items: TruthItem[];
  /** Candidates of ≥ 40 chars by a hash of their first 40 chars. */
  long: Map<number, Entry[]>;
  /** Candidates of 4..39 chars by a hash of their first 4 chars. */
  short: Map<number, Entry[]>;
  /** Candidates of 1..3 chars by a hash of their text. */
  tiny: Map<number, Entry[]>;
  /** Bit set over the hash of the first 3 chars of every candidate of ≥ 3 chars: most probes stop here. */
  start3: Uint8Array;
}

export interface CandidateMatch {
  item: TruthItem;
  /** positions[p] = index into item.candidates shown at position p (0-based, prompt order). */
  positions: number[];
  /** Position of the best candidate, or undefined when the best one is not in the prompt. */
  bestPosition: number | undefined;
}

export class TruthFileError extends Error {
  override readonly name = 'TruthFileError';
}

const KEY = 40;
const START_BITS = 1 << 16;

/**
 * FNV-1a over UTF-16 code units, fed one unit at a time: a probe hashes the prompt in place (no
 * substring per probe), capturing the hash after 1, 2, 3, 4 and 40 units in one pass.
 */
const FNV_OFFSET = 0x811c9dc5;
function fnvStep(h: number, code: number): number {
  return Math.imul(h ^ code, 0x01000193) & 0x3fffffff;
}
function fnv(text: string, end: number): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < end; i++) h = fnvStep(h, text.charCodeAt(i));
  return h;
}

function push(map: Map<number, Entry[]>, key: number, e: Entry): void {
  const list = map.get(key);
  if (list) list.push(e);
  else map.set(key, [e]);
}

export function buildTruthIndex(items: TruthItem[]): TruthIndex {
  const index: TruthIndex = { items, long: new Map(), short: new Map(), tiny: new Map(), start3: new Uint8Array(START_BITS / 8) };
  items.forEach((it, item) => {
    it.candidates.forEach((raw, cand) => {
      const text = raw.trim();
      if (!text) return;
      const e = { item, cand, text };
      if (text.length >= 3) {
        const h3 = fnv(text, 3) & (START_BITS - 1);
        index.start3[h3 >>> 3]! |= 1 << (h3 & 7);
      }
      if (text.length >= KEY) push(index.long, fnv(text, KEY), e);
      else if (text.length >= 4) push(index.short, fnv(text, 4), e);
      else push(index.tiny, fnv(text, text.length), e);
    });
  });
  return index;
}

/** Parses one JSONL line into a truth item, or explains why not. */
function parseTruthLine(raw: unknown, fallbackId: string): TruthItem | string {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return 'expected a JSON object';
  const r = raw as Record<string, unknown>;
  const id = typeof r.id === 'string' || typeof r.id === 'number' ? String(r.id) : fallbackId;
  if (Array.isArray(r.candidates)) {
    if (!r.candidates.every((c) => typeof c === 'string')) return '`candidates` must be strings';
    if (typeof r.best !== 'number' || !Number.isInteger(r.best) || r.best < 0 || r.best >= r.candidates.length) {
      return '`best` must be an index into `candidates`';
    }
    return { id, candidates: r.candidates as string[], best: r.best };
  }
  if (Array.isArray(r.response) && Array.isArray(r.human_ranking)) {
    if (!r.response.every((c) => typeof c === 'string')) return '`response` must be strings';
    const ranks = r.human_ranking as unknown[];
    if (ranks.length !== r.response.length || !ranks.every((x) => typeof x === 'number')) {
      return '`human_ranking` must be numbers, one per response';
    }
    const nums = ranks as number[];
    return { id, candidates: r.response as string[], best: nums.indexOf(Math.min(...nums)) };
  }
  return 'neither a VL-RewardBench record (response + human_ranking) nor {candidates, best}';
}

export function parseTruthJsonl(text: string, source: string): TruthItem[] {
  const items: TruthItem[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line) continue;
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch (err) {
      throw new TruthFileError(`${source}:${i + 1}: not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    const item = parseTruthLine(raw, `${source}:${i + 1}`);
    if (typeof item === 'string') throw new TruthFileError(`${source}:${i + 1}: ${item}`);
    items.push(item);
  }
  return items;
}

const fileCache = new Map<string, { mtimeMs: number; size: number; items: TruthItem[] }>();
const indexCache = new Map<string, { files: TruthItem[][]; index: TruthIndex }>();

function loadTruthFile(path: string): TruthItem[] {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw new TruthFileError(`truth file ${path} cannot be read: ${(err as Error).message}`, { cause: err });
  }
  const hit = fileCache.get(path);
  if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.items;
  const items = parseTruthJsonl(readFileSync(path, 'utf8'), path);
  fileCache.set(path, { mtimeMs: st.mtimeMs, size: st.size, items });
  return items;
}

/** Loads and indexes truth files (cached per path, size and modification time). */
export function loadTruthIndex(paths: string[]): TruthIndex {
  const abs = paths.map((p) => resolve(p));
  const files = abs.map(loadTruthFile);
  const key = abs.join('\u0000');
  const cached = indexCache.get(key);
  if (cached && cached.files.length === files.length && cached.files.every((f, i) => f === files[i])) return cached.index;
  const index = buildTruthIndex(files.flat());
  indexCache.set(key, { files, index });
  return index;
}

interface Hit {
  off: number;
  cand: number;
  len: number;
}

const LABEL_WIDTH = 40;

function isLabelDelimiter(c: number): boolean {
  // : ) ] . > -
  return c === 58 || c === 41 || c === 93 || c === 46 || c === 62 || c === 45;
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 13;
}

/**
 * A short candidate (< 40 chars, e.g. "3" or "Boar") must end its line (or be closed by a tag,
 * quote, bracket or emphasis): "3 apples" does not show the candidate "3".
 */
function endsHere(text: string, i: number): boolean {
  const n = text.length;
  while (i < n && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
  if (i >= n) return true;
  const c = text.charCodeAt(i);
  // \n \r < " ' ) ] *
  return c === 10 || c === 13 || c === 60 || c === 34 || c === 39 || c === 41 || c === 93 || c === 42;
}

function confirm(list: Entry[] | undefined, text: string, p: number, hits: Map<number, Hit[]>): void {
  if (list === undefined) return;
  for (let k = 0; k < list.length; k++) {
    const e = list[k]!;
    if (!text.startsWith(e.text, p)) continue;
    if (e.text.length < KEY && !endsHere(text, p + e.text.length)) continue;
    const hit = { off: p, cand: e.cand, len: e.text.length };
    const h = hits.get(e.item);
    if (h) h.push(hit);
    else hits.set(e.item, [hit]);
  }
}

/** Looks up every candidate that could start at `p` (one hashing pass over ≤ 40 chars). */
function probe(index: TruthIndex, text: string, p: number, hits: Map<number, Hit[]>): void {
  const n = text.length;
  const end = p + KEY <= n ? p + KEY : n;
  let h = FNV_OFFSET;
  let i = p;
  const lim = end < p + 4 ? end : p + 4;
  for (; i < lim; i++) {
    h = fnvStep(h, text.charCodeAt(i));
    const len = i - p + 1;
    if (len === 3) {
      const b = h & (START_BITS - 1);
      if ((index.start3[b >>> 3]! & (1 << (b & 7))) === 0) {
        if (index.tiny.size > 0) confirm(index.tiny.get(h), text, p, hits);
        return;
      }
    }
    if (len === 4) confirm(index.short.get(h), text, p, hits);
    else if (index.tiny.size > 0) confirm(index.tiny.get(h), text, p, hits);
  }
  for (; i < end; i++) h = fnvStep(h, text.charCodeAt(i));
  if (end - p === KEY) confirm(index.long.get(h), text, p, hits);
}

/** Which truth item a prompt shows (≥ 2 of its candidates) and in which order; undefined if none. */
export function locateCandidates(index: TruthIndex, text: string): CandidateMatch | undefined {
  if (index.items.length === 0) return undefined;
  const hits = new Map<number, Hit[]>();
  const n = text.length;
  let lineStart = 0;
  while (lineStart < n) {
    let lineEnd = text.indexOf('\n', lineStart);
    if (lineEnd < 0) lineEnd = n;
    let p0 = lineStart;
    while (p0 < lineEnd && isSpace(text.charCodeAt(p0))) p0++;
    if (p0 < lineEnd) {
      probe(index, text, p0, hits);
      const limit = lineEnd < p0 + LABEL_WIDTH ? lineEnd : p0 + LABEL_WIDTH;
      for (let q = p0; q < limit; q++) {
        if (!isLabelDelimiter(text.charCodeAt(q))) continue;
        let p1 = q + 1;
        while (p1 < lineEnd && isSpace(text.charCodeAt(p1))) p1++;
        if (p1 >= lineEnd) continue;
        probe(index, text, p1, hits);
        // "**Response A:** text" and "**Response A:** **Title** …": also try past each emphasis run.
        for (let round = 0; round < 2 && text.charCodeAt(p1) === 42; round++) {
          while (p1 < lineEnd && text.charCodeAt(p1) === 42) p1++;
          while (p1 < lineEnd && isSpace(text.charCodeAt(p1))) p1++;
          if (p1 >= lineEnd) break;
          probe(index, text, p1, hits);
        }
      }
    }
    lineStart = lineEnd + 1;
  }

  // Per item, walk its hits from the end: a candidate takes its last occurrence (a query may quote
  // an option before the responses show it), and at one offset the longest unassigned candidate
  // wins (one candidate can be a prefix of another).
  let best: { item: number; positions: number[]; len: number } | undefined;
  for (const [item, list] of hits) {
    list.sort((a, b) => b.off - a.off || b.len - a.len);
    const used = new Set<number>();
    const placed: { off: number; cand: number }[] = [];
    let len = 0;
    let i = 0;
    while (i < list.length) {
      const off = list[i]!.off;
      let chosen: Hit | undefined;
      for (; i < list.length && list[i]!.off === off; i++) {
        const h = list[i]!;
        if (!chosen && !used.has(h.cand)) chosen = h;
      }
      if (chosen) {
        used.add(chosen.cand);
        placed.push({ off, cand: chosen.cand });
        len += chosen.len;
      }
    }
    if (placed.length < 2) continue;
    const positions = placed.reverse().map((x) => x.cand);
    if (
      !best ||
      positions.length > best.positions.length ||
      (positions.length === best.positions.length && (len > best.len || (len === best.len && item < best.item)))
    ) {
      best = { item, positions, len };
    }
  }
  if (!best) return undefined;
  const item = index.items[best.item]!;
  const bp = best.positions.indexOf(item.best);
  return { item, positions: best.positions, bestPosition: bp < 0 ? undefined : bp };
}
