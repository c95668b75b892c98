/**
 * Where the simulated policy learns the right answer to a question about an image: an answers
 * source, one of
 * - `easy-vqa` or `easy-vqa:<split>`: the installed PyPI package's data (located with python3);
 * - a folder holding `questions.json` (`[question, answer, image_id]` rows) and `images/<id>.png`;
 * - a JSONL file of `{question, answer, image?, image_sha256?}` (image: a path relative to the file).
 *
 * A prompt is matched by the sha256 of its first image's bytes and a question of that image whose
 * text appears in the prompt (the longest one wins); text-only rows match by question alone.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { TruthFileError } from './truth.js';

export interface AnswerIndex {
  /** By image sha256 ('' for text-only rows): the questions about it, normalized, with their answers. */
  byImage: Map<string, { question: string; answer: string }[]>;
  /** Every distinct answer: a wrong answer is drawn from these. */
  vocabulary: string[];
}

const cache = new Map<string, AnswerIndex>();

export function normalizeQuestion(s: string): string {
  return s.toLowerCase().replace(/\s+/g, ' ').trim();
}

function sha256File(path: string, memo: Map<string, string>): string {
  let h = memo.get(path);
  if (h === undefined) {
    h = createHash('sha256').update(readFileSync(path)).digest('hex');
    memo.set(path, h);
  }
  return h;
}

function easyVqaFolder(split: string): string {
  let dir: string;
  try {
    dir = execFileSync('python3', ['-c', 'import easy_vqa, os; print(os.path.dirname(easy_vqa.__file__))'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  } catch (err) {
    throw new TruthFileError('answers easy-vqa: the easy-vqa package is not installed for python3 (python3 -m pip install easy-vqa==1.0)', { cause: err });
  }
  return join(dir, 'data', split);
}

/** Loads (once per source) the answers of a policy model. */
export function loadAnswerIndex(source: string): AnswerIndex {
  const hit = cache.get(source);
  if (hit) return hit;
  const rows: { image: string; question: string; answer: string }[] = [];
  const memo = new Map<string, string>();
  const m = /^easy-vqa(?::(\w+))?$/.exec(source);
  const folder = m ? easyVqaFolder(m[1] ?? 'test') : existsSync(source) && statSync(source).isDirectory() ? source : undefined;
  if (folder !== undefined) {
    const file = join(folder, 'questions.json');
    let all: unknown;
    try {
      all = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new TruthFileError(`answers ${file}: ${(err as Error).message}`, { cause: err });
    }
    if (!Array.isArray(all)) throw new TruthFileError(`answers ${file}: not a list of [question, answer, image_id] rows`);
    for (const r of all as unknown[]) {
      if (!Array.isArray(r) || typeof r[0] !== 'string' || typeof r[1] !== 'string') continue;
      const img = join(folder, 'images', `${String(r[2])}.png`);
      if (!existsSync(img)) continue;
      rows.push({ image: sha256File(img, memo), question: r[0], answer: r[1] });
    }
  } else {
    let text: string;
    try {
      text = readFileSync(source, 'utf8');
    } catch (err) {
      throw new TruthFileError(`answers ${source}: ${(err as Error).message}`, { cause: err });
    }
    text.split('\n').forEach((line, i) => {
      if (line.trim() === '') return;
      let rec: { question?: unknown; answer?: unknown; image?: unknown; image_sha256?: unknown };
      try {
        rec = JSON.parse(line) as typeof rec;
      } catch (err) {
        throw new TruthFileError(`answers ${source}: line ${i + 1}: ${(err as Error).message}`, { cause: err });
      }
      if (typeof rec.question !== 'string' || typeof rec.answer !== 'string')
        throw new TruthFileError(`answers ${source}: line ${i + 1}: needs string question and answer`);
      let image = typeof rec.image_sha256 === 'string' ? rec.image_sha256 : '';
      if (!image && typeof rec.image === 'string' && rec.image !== '') {
        const p = isAbsolute(rec.image) ? rec.image : resolve(dirname(source), rec.image);
        image = sha256File(p, memo);
      }
      rows.push({ image, question: rec.question, answer: rec.answer });
    });
  }
  if (rows.length === 0) throw new TruthFileError(`answers ${source}: no rows`);
  const byImage = new Map<string, { question: string; answer: string }[]>();
  for (const r of rows) {
    const list = byImage.get(r.image) ?? [];
    list.push({ question: normalizeQuestion(r.question), answer: r.answer });
    byImage.set(r.image, list);
  }
  const index = { byImage, vocabulary: [...new Set(rows.map((r) => r.answer))].sort() };
  cache.set(source, index);
  return index;
}

/** The answer to the question a prompt asks about its image, or undefined. */
export function lookupAnswer(index: AnswerIndex, imageHash: string, promptText: string): string | undefined {
  const candidates = index.byImage.get(imageHash);
  if (!candidates) return undefined;
  const text = normalizeQuestion(promptText);
  let best: { question: string; answer: string } | undefined;
  for (const c of candidates) if (text.includes(c.question) && (!best || c.question.length > best.question.length)) best = c;
  return best?.answer;
}
