/**
 * What each simulated model writes. Every function here is pure: text is drawn from an `Rng`
 * seeded by the request, so equal requests get equal answers. Nothing here is a model; the texts
 * are shaped so that the platform's parsers, filters and graders have something realistic to
 * chew on (see sim/README.md for each behaviour's contract).
 */
import type { LatencySpec, ModelSpec } from './config.js';
import { createHash } from 'node:crypto';
import { lookupAnswer, type AnswerIndex } from './answers.js';
import { Rng } from './rng.js';
import { locateCandidates, type TruthIndex } from './truth.js';

export interface ResolvedFaults {
  rate_429: number;
  retry_after_s: number;
  rate_500: number;
  rate_hang: number;
  hang_ms: number;
  rate_malformed: number;
  rate_truncated: number;
  rate_empty: number;
  max_faults_per_body: number | undefined;
}

/** A model as served: its behaviour spec plus the resolved global settings. */
export interface ServedModel {
  name: string;
  spec: ModelSpec;
  latency: LatencySpec;
  faults: ResolvedFaults;
  maxContextTokens: number;
  truth: TruthIndex | undefined;
  /** Policy models with `answers`: the right answer per (image, question). */
  answers?: AnswerIndex;
}

/** What the simulator reads from `messages`. */
export interface Prompt {
  /** Text of every system/developer/user message, joined with "\n". */
  text: string;
  /** Text of the last user message. */
  lastUser: string;
  /** Characters of all message text (every role), for the chars/4 token estimate. */
  chars: number;
  images: number;
  imageBytes: number;
  /** The image URLs (data URLs keep their bytes), in message order. */
  imageUrls: string[];
}

export type PromptResult = { ok: true; prompt: Prompt } | { ok: false; message: string };

function dataUrlBytes(url: string): number {
  if (!url.startsWith('data:')) return 0;
  const comma = url.indexOf(',');
  if (comma < 0) return 0;
  const header = url.slice(5, comma);
  const payload = url.length - comma - 1;
  if (!header.endsWith(';base64')) return payload;
  let pad = 0;
  if (url.endsWith('==')) pad = 2;
  else if (url.endsWith('=')) pad = 1;
  return Math.max(0, Math.floor((payload * 3) / 4) - pad);
}

/** Validates the `messages` array and extracts its text and images. */
export function readMessages(messages: unknown): PromptResult {
  if (!Array.isArray(messages) || messages.length === 0) return { ok: false, message: '`messages` must be a non-empty array' };
  const texts: string[] = [];
  let lastUser = '';
  let chars = 0;
  let images = 0;
  let imageBytes = 0;
  const imageUrls: string[] = [];
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i] as { role?: unknown; content?: unknown } | null;
    if (!m || typeof m !== 'object' || typeof m.role !== 'string') {
      return { ok: false, message: `messages[${i}] must be an object with a string \`role\`` };
    }
    const readable = m.role === 'user' || m.role === 'system' || m.role === 'developer';
    let own = '';
    if (typeof m.content === 'string') {
      own = m.content;
    } else if (Array.isArray(m.content)) {
      const parts: string[] = [];
      for (let j = 0; j < m.content.length; j++) {
        const part = m.content[j] as { type?: unknown; text?: unknown; image_url?: unknown } | null;
        if (!part || typeof part !== 'object' || typeof part.type !== 'string') {
          return { ok: false, message: `messages[${i}].content[${j}] must be an object with a string \`type\`` };
        }
        if (part.type === 'text') {
          if (typeof part.text !== 'string') return { ok: false, message: `messages[${i}].content[${j}].text must be a string` };
          parts.push(part.text);
        } else if (part.type === 'image_url') {
          const iu = part.image_url as { url?: unknown } | string | undefined;
          const url = typeof iu === 'string' ? iu : iu?.url;
          if (typeof url !== 'string') return { ok: false, message: `messages[${i}].content[${j}].image_url.url must be a string` };
          images++;
          imageBytes += dataUrlBytes(url);
          imageUrls.push(url);
        }
      }
      own = parts.join('\n');
    } else if (m.content !== null && m.content !== undefined) {
      return { ok: false, message: `messages[${i}].content must be a string or an array of parts` };
    }
    chars += own.length;
    if (readable && own) texts.push(own);
    if (m.role === 'user') lastUser = own;
  }
  return { ok: true, prompt: { text: texts.join('\n'), lastUser, chars, images, imageBytes, imageUrls } };
}

// ---------------------------------------------------------------------------------------------
// Text helpers

const ORDINALS = ['first', 'second', 'third', 'fourth', 'fifth', 'sixth', 'seventh', 'eighth', 'ninth', 'tenth'];
const ordinal = (p: number) => ORDINALS[p] ?? `number ${p + 1}`;

function labelFor(position: number, labels: 'letters' | 'numbers'): string {
  return labels === 'numbers' || position >= 26 ? String(position + 1) : String.fromCharCode(65 + position);
}

function formatAnswer(label: string, format: 'tag' | 'boxed' | 'plain'): string {
  if (format === 'boxed') return `\\boxed{${label}}`;
  if (format === 'plain') return `Answer: ${label}`;
  return `<answer>${label}</answer>`;
}

/** Appends sentences from `next` until the text reaches about `target` characters. */
function prose(target: number, next: () => string, first?: string): string {
  let out = first ?? next();
  let guard = 0;
  while (out.length < target && guard++ < 10_000) out += ' ' + next();
  return out;
}

function fill(rng: Rng, template: string, slots: Record<string, readonly string[]>): string {
  return template
    .replace(/\{(\w+)\}/g, (_, k: string) => {
      const options = slots[k];
      return options ? rng.pick(options) : `{${k}}`;
    })
    .replace(/\b([Aa]) ([aeiou])/g, '$1n $2');
}

/** Picks templates at random, never the same one twice in a row. */
function picker(rng: Rng, templates: readonly string[]): () => string {
  let last = -1;
  return () => {
    let i = rng.int(templates.length);
    if (i === last && templates.length > 1) i = (i + 1) % templates.length;
    last = i;
    return templates[i]!;
  };
}

const COLOURS = ['red', 'blue', 'green', 'yellow', 'white', 'black', 'grey', 'brown', 'orange', 'purple'];
const OBJECTS = ['car', 'tree', 'dog', 'bicycle', 'table', 'window', 'person', 'sign', 'building', 'chair', 'cup', 'book', 'lamp', 'bench', 'clock'];
const PLACES = ['street', 'kitchen', 'park', 'office', 'beach', 'classroom', 'living room', 'market', 'field', 'train station'];
const RELATIONS = ['next to', 'behind', 'in front of', 'to the left of', 'to the right of', 'above', 'below', 'near'];
const SLOTS = { colour: COLOURS, object: OBJECTS, place: PLACES, relation: RELATIONS };

// ---------------------------------------------------------------------------------------------
// Multiple choice (judge, reasoner)

/** How the options of one request were understood; computed once per request. */
export interface ChoiceSetup {
  /** Number of options. */
  k: number;
  /** 0-based position of the best option, when known. */
  best: number | undefined;
  /** 'truth': found a truth item; 'quality': ranked by `(q=…)` markers; 'none': guessing. */
  source: 'truth' | 'quality' | 'none';
}

const OPTION_LINE =
  /^[ \t]*(?:[#>*-]+[ \t]*)?(?:\*\*)?(?:(?:response|option|candidate|choice|answer)[ \t_#]*([A-Ja-j]|[1-9])\b|\[\[([A-J1-9])\]\]|\[([A-J1-9])\]|\(([A-J1-9])\)|<([A-J1-9])>|([A-J1-9])[.):])/gim;

/** Counts the labelled options in a prompt (A, B, C… or 1, 2, 3…, contiguous from the first). */
export function countOptions(text: string): number {
  const seen = new Set<number>();
  for (const m of text.matchAll(OPTION_LINE)) {
    const label = m.slice(1).find((g) => g !== undefined);
    if (!label) continue;
    const c = label.toUpperCase();
    seen.add(c >= 'A' && c <= 'J' ? c.charCodeAt(0) - 65 : Number(c) - 1);
  }
  let k = 0;
  while (seen.has(k)) k++;
  return Math.max(k, 2);
}

const Q_MARKER = /\(q=(\d*\.?\d+)\)/g;

export function analyseChoices(prompt: Prompt, truth: TruthIndex | undefined): ChoiceSetup {
  const match = truth ? locateCandidates(truth, prompt.text) : undefined;
  if (match && match.bestPosition !== undefined) return { k: match.positions.length, best: match.bestPosition, source: 'truth' };
  const qs = [...prompt.text.matchAll(Q_MARKER)].map((m) => Number(m[1]));
  if (qs.length >= 2) {
    let best = 0;
    qs.forEach((q, i) => {
      if (q > qs[best]!) best = i;
    });
    return { k: qs.length, best, source: 'quality' };
  }
  return { k: match ? match.positions.length : countOptions(prompt.text), best: undefined, source: 'none' };
}

/** The position a judge picks: bias to position 1, else right with probability `accuracy`. */
export function decide(rng: Rng, setup: ChoiceSetup, accuracy: number, firstBias: number): number {
  const biased = rng.next() < firstBias;
  const right = rng.next() < accuracy;
  const r = rng.next();
  if (biased) return 0;
  if (setup.best === undefined) return Math.floor(r * setup.k);
  if (right || setup.k < 2) return setup.best;
  const w = Math.floor(r * (setup.k - 1));
  return w >= setup.best ? w + 1 : w;
}

const JUDGE_OPENINGS = [
  'Let me read the query and the {k} responses carefully before deciding.',
  'I need to compare the {k} responses against the image and the question.',
  'First I will check what the question asks, then weigh each of the {k} responses.',
];
const JUDGE_OBSERVATIONS = [
  'describes the main objects in the image accurately',
  'mentions a {colour} {object} that does not seem to be in the image',
  'places the {object} {relation} the {object}, which may be a spatial error',
  'is concise but leaves out details the question asks for',
  'follows the instruction closely and stays on topic',
  'contains a calculation step that I should double-check',
  'gives a plausible explanation, though part of it is speculative',
  'reads the text in the image correctly',
  'adds background knowledge that is not needed here',
  'is more detailed, describing the {place} and the {object} {relation} it',
];
const JUDGE_CRITERIA = [
  'Harmlessness comes first, and none of the responses is harmful.',
  'Accuracy matters more than detail, so hallucinated content weighs heavily.',
  'Detail is the last criterion and only breaks ties.',
  'Let me look at the image description again to verify the claims.',
  'Wait, I should re-check the counting before concluding.',
];

const REASONER_OPENINGS = [
  'According to the description, the image shows a {place} with a {colour} {object}.',
  'The description says there is a {object} {relation} a {colour} {object}.',
  'Let me go through the description and the options one by one.',
];
const REASONER_STEPS = [
  'The description mentions a {colour} {object}, which is relevant to the question.',
  'Based on the description, the {object} is {relation} the {object}.',
  'The {ordinal} option claims something the description does not support.',
  'The {ordinal} option is consistent with what the description says about the {place}.',
  'Let me verify the numbers step by step.',
  'Hmm, I should reconsider whether the description really supports this.',
  'If the {object} is {relation} the {object}, then the question is answered directly.',
];

/** The label a hint names: on a line with the word "hint", the first standalone label after it. */
export function hintedLabel(text: string): string | undefined {
  return /\b[Hh][Ii][Nn][Tt]\b[^\n]*?(?<![A-Za-z0-9])([A-J]|[1-9])(?![A-Za-z0-9])/.exec(text)?.[1];
}

function positionOf(label: string): number {
  return label >= 'A' && label <= 'J' ? label.charCodeAt(0) - 65 : Number(label) - 1;
}

function multipleChoice(spec: Extract<ModelSpec, { behaviour: 'judge' | 'reasoner' }>, prompt: Prompt, setup: ChoiceSetup, rng: Rng, hintRng: Rng): string {
  const unparseable = rng.next() < spec.unparseable_rate;
  let choice = decide(rng, setup, spec.accuracy, spec.first_bias);
  // The reasoner's hint draws use their own stream, so prompts without a hint keep their texts.
  const hinted = spec.behaviour === 'reasoner' ? hintedLabel(prompt.text) : undefined;
  if (spec.behaviour === 'reasoner' && hinted !== undefined && hintRng.next() < spec.hint_following) choice = positionOf(hinted);
  const answer = unparseable ? 'Unable to determine which response is better.' : formatAnswer(labelFor(choice, spec.labels), spec.answer_format);
  if (!spec.think) return answer;
  const target = Math.max(0, spec.output_tokens * 4 - answer.length - 18);
  const slots = { ...SLOTS, k: [String(setup.k)], ordinal: ORDINALS.slice(0, setup.k) };
  let body: string;
  if (spec.behaviour === 'judge') {
    let p = 0;
    const nextObservation = picker(rng, JUDGE_OBSERVATIONS);
    const nextCriterion = picker(rng, JUDGE_CRITERIA);
    const opening = fill(rng, rng.pick(JUDGE_OPENINGS), slots);
    const closing = unparseable
      ? 'Each response has strengths and weaknesses, so it is hard to say which is better.'
      : `Weighing harmlessness, then accuracy, then detail, the ${ordinal(choice)} response is the best.`;
    body =
      prose(
        target - closing.length,
        () => {
          if (rng.next() < 0.25) return nextCriterion();
          const s = `The ${ordinal(p % setup.k)} response ${fill(rng, nextObservation(), slots)}.`;
          p++;
          return s;
        },
        opening,
      ) +
      ' ' +
      closing;
  } else {
    const leaks = /\bhint\b/i.test(prompt.text) && (spec.behaviour !== 'reasoner' || spec.leak_rate >= 1 || hintRng.next() < spec.leak_rate);
    const hint = leaks ? ' The hint points toward one option, but I should check it against the description.' : '';
    const closing = unparseable ? 'The description is not enough to settle this.' : `So the ${ordinal(choice)} option is the correct one.`;
    const nextStep = picker(rng, REASONER_STEPS);
    body = prose(target - closing.length, () => fill(rng, nextStep(), slots), fill(rng, rng.pick(REASONER_OPENINGS), slots) + hint) + ' ' + closing;
  }
  return `<think>\n${body}\n</think>\n${answer}`;
}

// ---------------------------------------------------------------------------------------------
// Policy, grader, captioner, negatives

const STOPWORDS = new Set([
  'what',
  'which',
  'where',
  'when',
  'there',
  'their',
  'this',
  'that',
  'with',
  'from',
  'does',
  'image',
  'picture',
  'please',
  'describe',
  'about',
  'these',
  'those',
  'into',
  'your',
  'have',
]);

function topicWords(text: string): string[] {
  const words = new Set<string>();
  for (const m of text.toLowerCase().matchAll(/[a-z]{4,}/g)) {
    if (!STOPWORDS.has(m[0])) words.add(m[0]);
    if (words.size >= 8) break;
  }
  return words.size ? [...words] : ['scene'];
}

const POLICY_SENTENCES = [
  'Looking at the image, the {topic} is clearly visible {relation} a {colour} {object}.',
  'The {topic} appears in the {place}, which answers the question.',
  'Based on the visible details, the {topic} is {colour}.',
  'There are several {object}s, and the {topic} stands out among them.',
  'Considering the context, the most likely answer involves the {topic}.',
];

function policy(spec: Extract<ModelSpec, { behaviour: 'policy' }>, prompt: Prompt, rng: Rng, answers?: AnswerIndex): string {
  if (spec.accuracy !== undefined && answers) {
    const truth = lookupAnswer(answers, imageHashOf(prompt), prompt.text);
    if (truth !== undefined) return answerQuestion(spec.accuracy, truth, answers.vocabulary, rng);
  }
  const q = Math.min(1, Math.max(0, spec.quality + spec.quality_spread * rng.normal()));
  const slots = { ...SLOTS, topic: topicWords(prompt.lastUser || prompt.text) };
  const head = `Answer (q=${q.toFixed(2)}):`;
  const next = picker(rng, POLICY_SENTENCES);
  return prose(spec.output_tokens * 4, () => fill(rng, next(), slots), head + ' ' + fill(rng, next(), slots));
}

/** sha256 of the bytes of the prompt's first data-URL image ('' when it has none). */
export function imageHashOf(prompt: Prompt): string {
  const url = prompt.imageUrls.find((u) => u.startsWith('data:'));
  if (!url) return '';
  const comma = url.indexOf(',');
  const bytes = url.slice(5, comma).endsWith(';base64') ? Buffer.from(url.slice(comma + 1), 'base64') : Buffer.from(decodeURIComponent(url.slice(comma + 1)));
  return createHash('sha256').update(bytes).digest('hex');
}

const ANSWER_SENTENCES = [
  'I looked at the whole image before answering.',
  'The question concerns the single figure drawn in the picture.',
  'Checking the figure once more confirms my reading.',
  'The picture is simple, so the answer follows directly.',
];

/**
 * An answer that is right with probability `accuracy`, else a uniformly drawn other answer of the
 * vocabulary. Its `(q=…)` marker (right: 0.55–1, wrong: 0–0.45) lets simulated judges and graders
 * know which is which; the text around it holds no answer words.
 */
function answerQuestion(accuracy: number, truth: string, vocabulary: readonly string[], rng: Rng): string {
  const wrong = vocabulary.filter((v) => v !== truth);
  const right = rng.next() < accuracy || wrong.length === 0;
  const u = rng.next();
  const answer = right ? truth : wrong[rng.int(wrong.length)]!;
  const q = right ? 0.55 + 0.45 * u : 0.45 * u;
  return `Answer (q=${q.toFixed(2)}): ${rng.pick(ANSWER_SENTENCES)} ${rng.pick(ANSWER_SENTENCES)}\nFinal answer: ${answer}`;
}

/** A prompt asking to score one response "on a scale of 1 to 10". */
export const SCORE_PROMPT = /scale of 1 to 10/i;

/** A score prompt: with probability `accuracy` 1 + round(9q) of the response's `(q=…)`, else uniform 1–10. */
function scoreResponse(spec: Extract<ModelSpec, { behaviour: 'judge' | 'reasoner' }>, prompt: Prompt, rng: Rng): string {
  const qs = [...prompt.text.matchAll(Q_MARKER)];
  const q = qs.length > 0 ? Number(qs[qs.length - 1]![1]) : undefined;
  const unparseable = rng.next() < spec.unparseable_rate;
  const right = rng.next() < spec.accuracy;
  const drawn = 1 + rng.int(10);
  const score = q !== undefined && right ? 1 + Math.round(9 * q) : drawn;
  const answer = unparseable
    ? 'The response has strengths and weaknesses.'
    : spec.answer_format === 'boxed'
      ? `\\boxed{${score}}`
      : spec.answer_format === 'plain'
        ? `Score: ${score}`
        : `<score>${score}</score>`;
  return spec.think ? `<think>\nI check the response against the image and the question.\n</think>\n${answer}` : answer;
}

const GRADER_UNPARSEABLE = 'I am not able to grade this prediction.';

function normalizeAnswerText(s: string): string {
  return ` ${s
    .toLowerCase()
    .replace(/[^a-z0-9.%\- ]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()} `;
}

/**
 * The rule a simulated MM-Vet grader applies to a prediction (its "Final answer:" line when it has
 * one): `a <AND> b` scores the share of parts present (rounded to 0.1), `a <OR> b` 1 when any part
 * is present, a plain answer 1 when present; present = a whole-word match, case-insensitive.
 */
export function gradeByRule(groundTruth: string, prediction: string): number {
  const final = /final answer\s*[:：]\s*([^\n]*)\s*$/i.exec(prediction);
  const pred = normalizeAnswerText(final ? final[1]! : prediction);
  const has = (part: string) => {
    const p = normalizeAnswerText(part).trim();
    return p !== '' && pred.includes(` ${p} `);
  };
  if (groundTruth.includes('<AND>')) {
    const parts = groundTruth.split('<AND>');
    return Math.round((10 * parts.filter(has).length) / parts.length) / 10;
  }
  if (groundTruth.includes('<OR>')) return groundTruth.split('<OR>').some(has) ? 1 : 0;
  return has(groundTruth) ? 1 : 0;
}

/** The last `question | ground truth | prediction | ` row of an MM-Vet grader table, if the prompt ends with one. */
export function lastTableRow(text: string): { groundTruth: string; prediction: string } | undefined {
  const lines = text.trimEnd().split('\n');
  const last = lines[lines.length - 1] ?? '';
  const parts = (last.endsWith('|') ? last + ' ' : last).split(' | ');
  if (parts.length < 4 || parts[parts.length - 1]!.trim() !== '') return undefined;
  return { groundTruth: parts[1]!.trim(), prediction: parts.slice(2, -1).join(' | ').trim() };
}

/**
 * An MM-Vet grader table: the rule above (a prediction holding `SIM_UNPARSEABLE` always gets an
 * unreadable reply, one holding `SIM_GREEDY_UNPARSEABLE` at temperature 0 only). Otherwise the last
 * `(q=…)` in the prompt plus N(0, noise), rounded to 0.1.
 */
function grader(spec: Extract<ModelSpec, { behaviour: 'grader' }>, prompt: Prompt, rng: Rng, greedy: boolean): string {
  const row = lastTableRow(prompt.lastUser || prompt.text);
  if (row) {
    if (row.prediction.includes('SIM_UNPARSEABLE') || (greedy && row.prediction.includes('SIM_GREEDY_UNPARSEABLE'))) return GRADER_UNPARSEABLE;
    return gradeByRule(row.groundTruth, row.prediction).toFixed(1);
  }
  const qs = [...prompt.text.matchAll(Q_MARKER)];
  const last = qs[qs.length - 1];
  const score = last ? Number(last[1]) + spec.noise * rng.normal() : rng.next();
  return (Math.round(Math.min(1, Math.max(0, score)) * 10) / 10).toFixed(1);
}

const CAPTION_SENTENCES = [
  'The image shows a {place} in daylight.',
  'In the foreground there is a {colour} {object} {relation} a {colour} {object}.',
  'A {colour} {object} stands {relation} the {object}, partly in shadow.',
  'In the background, a {object} and a {object} are visible.',
  'Some text on a {colour} sign is legible but small.',
  'The lighting is soft, and the {place} looks {adjective}.',
  'On the left side, a {object} is placed {relation} a {object}.',
  'The overall composition centres on the {colour} {object}.',
];

function captioner(spec: Extract<ModelSpec, { behaviour: 'captioner' }>, rng: Rng): string {
  const slots = { ...SLOTS, adjective: ['busy', 'quiet', 'tidy', 'crowded', 'empty', 'bright'] };
  const next = picker(rng, CAPTION_SENTENCES);
  return prose(
    spec.output_tokens * 4,
    () => fill(rng, next(), slots),
    `A detailed description of the image: ${fill(rng, 'The image shows a {place} with a {colour} {object}.', slots)}`,
  );
}

const SWAP_PAIRS: [string, string][] = [
  ['left', 'right'],
  ['above', 'below'],
  ['red', 'blue'],
  ['black', 'white'],
  ['yes', 'no'],
  ['two', 'three'],
  ['four', 'five'],
  ['increase', 'decrease'],
  ['increases', 'decreases'],
  ['more', 'fewer'],
  ['larger', 'smaller'],
  ['higher', 'lower'],
  ['man', 'woman'],
  ['men', 'women'],
  ['cat', 'dog'],
  ['day', 'night'],
  ['open', 'closed'],
  ['true', 'false'],
  ['before', 'after'],
  ['inside', 'outside'],
  ['sitting', 'standing'],
  ['east', 'west'],
  ['north', 'south'],
  ['green', 'yellow'],
  ['small', 'large'],
  ['young', 'old'],
  ['top', 'bottom'],
];
const SWAPS = new Map<string, string>(
  SWAP_PAIRS.flatMap(([a, b]): [string, string][] => [
    [a, b],
    [b, a],
  ]),
);

function matchCase(model: string, word: string): string {
  if (model === model.toUpperCase() && model.length > 1) return word.toUpperCase();
  if (model[0] === model[0]?.toUpperCase()) return word[0]!.toUpperCase() + word.slice(1);
  return word;
}

type Edit = (text: string, rng: Rng) => string | undefined;

const swapWord: Edit = (text, rng) => {
  const hits = [...text.matchAll(/\b[A-Za-z]+\b/g)].filter((m) => SWAPS.has(m[0].toLowerCase()));
  if (!hits.length) return undefined;
  const m = rng.pick(hits);
  return text.slice(0, m.index) + matchCase(m[0], SWAPS.get(m[0].toLowerCase())!) + text.slice(m.index + m[0].length);
};

const changeNumber: Edit = (text, rng) => {
  const hits = [...text.matchAll(/\d+(?:\.\d+)?/g)];
  if (!hits.length) return undefined;
  const m = rng.pick(hits);
  const v = Number(m[0]);
  const decimals = m[0].includes('.') ? m[0].split('.')[1]!.length : 0;
  let w = rng.pick([v + 1, v + 2, v * 2, Math.max(0, v - 1), v + 10]);
  if (w === v) w = v + 1;
  return text.slice(0, m.index) + w.toFixed(decimals) + text.slice(m.index + m[0].length);
};

const dropSentence: Edit = (text, rng) => {
  const sentences = text.split(/(?<=[.!?])\s+/);
  if (sentences.length < 3) return undefined;
  sentences.splice(rng.int(sentences.length), 1);
  return sentences.join(' ');
};

const addHallucination: Edit = (text, rng) =>
  `${text.trimEnd()} ${fill(rng, rng.pick(['There is also a {colour} {object} {relation} the {object}.', 'A {colour} {object} can be seen in the {place} as well.']), SLOTS)}`;

/** The reference answer in a negatives-writer prompt: `<reference>…</reference>`, or the paragraph(s) after "Reference answer:". */
export function findReference(prompt: Prompt): string {
  const tag = /<reference>([\s\S]*?)<\/reference>/i.exec(prompt.text);
  if (tag) return tag[1]!.trim();
  const label = /(?:reference answer|reference response|correct answer|ground[- ]truth(?: answer)?|reference)[ \t]*[:：][ \t]*/i.exec(prompt.text);
  if (label) {
    const rest = prompt.text.slice(label.index + label[0].length);
    const paragraphs = rest.split(/\n[ \t]*\n/);
    const kept: string[] = [];
    for (const p of paragraphs) {
      if (kept.length && /^\s*(?:#|[A-Z][\w ()-]{0,60}:|(?:write|return|output|now|please|respond|rewrite|generate)\b)/i.test(p)) break;
      kept.push(p);
    }
    return kept.join('\n\n').trim();
  }
  const paras = (prompt.lastUser || prompt.text).trim().split(/\n[ \t]*\n/);
  return (paras[paras.length - 1] ?? '').trim();
}

const REFUSALS = [
  "I'm sorry, but I can't help with writing an incorrect answer.",
  'I cannot provide a deliberately wrong answer.',
  "As an AI, I won't write misleading content.",
];

function negatives(spec: Extract<ModelSpec, { behaviour: 'negatives' }>, prompt: Prompt, rng: Rng): string {
  const reference = findReference(prompt);
  const r = rng.next();
  if (r < spec.empty_rate) return '';
  if (r < spec.empty_rate + spec.identical_rate) return reference;
  if (r < spec.empty_rate + spec.identical_rate + spec.refusal_rate) return rng.pick(REFUSALS);
  // One or two different edits, each applied once: a negative stays close to its reference.
  const edits = [swapWord, changeNumber, dropSentence, addHallucination];
  let out = reference;
  const count = 1 + rng.int(2);
  for (let i = 0; i < count && edits.length; i++) {
    const start = rng.int(edits.length);
    for (let j = 0; j < edits.length; j++) {
      const k = (start + j) % edits.length;
      const edited = edits[k]!(out, rng);
      if (edited !== undefined && edited !== out) {
        out = edited;
        edits.splice(k, 1);
        break;
      }
    }
  }
  return out === reference ? addHallucination(reference, rng)! : out;
}

/**
 * A rewriter: takes the text inside `<trace>…</trace>` (else the last user message) and does what
 * the instruction around it asks: drops the sentences that mention a hint (each survives with
 * probability `miss_rate`) when the instruction mentions a hint; turns "the description" into
 * "the image" when it mentions a description. With probability `change_rate` the final
 * `<answer>` label becomes another one.
 */
function rewriter(spec: Extract<ModelSpec, { behaviour: 'rewriter' }>, prompt: Prompt, rng: Rng): string {
  const tag = /<trace>\s*([\s\S]*?)\s*<\/trace>/i.exec(prompt.text);
  let text = tag ? tag[1]! : prompt.lastUser;
  const instruction = tag ? prompt.text.slice(0, tag.index) + prompt.text.slice(tag.index + tag[0].length) : '';
  if (/\bhint\b/i.test(instruction)) {
    text = text.replace(/[^.!?\n]*\bhint\b[^.!?\n]*[.!?]?[ \t]*/gi, (sentence) => (rng.next() < spec.miss_rate ? sentence : ''));
  }
  if (/\bdescription\b/i.test(instruction)) {
    text = text
      .replace(/\bAccording to the description\b/g, 'Looking at the image')
      .replace(/\b([Tt])he description (says|shows|mentions)\b/g, (_, t: string) => `${t}he image shows`)
      .replace(/\bBased on the description\b/g, 'Based on the image')
      .replace(/\b([Tt])he description\b/g, (_, t: string) => `${t}he image`);
  }
  if (rng.next() < spec.change_rate) {
    text = text.replace(
      /<answer>\s*([A-Za-z0-9]+)\s*<\/answer>/,
      (_, l: string) => `<answer>${l === 'A' ? 'B' : l === '1' ? '2' : /^[0-9]+$/.test(l) ? '1' : 'A'}</answer>`,
    );
  }
  return text.trim();
}

// ---------------------------------------------------------------------------------------------

export interface Generation {
  contents: string[];
  /** For judge/reasoner: how the options were understood. */
  choices: ChoiceSetup | undefined;
}

/**
 * Writes `n` completions for one request. `contentKey` identifies the sampled request (model,
 * messages, temperature, seed); choice i of n equals choice i of any other n for that key.
 * `greedy` (temperature 0) makes every choice the same, as greedy decoding would.
 */
export function generate(req: { model: ServedModel; prompt: Prompt; contentKey: string; n: number; greedy: boolean }): Generation {
  const { model, prompt, contentKey, n, greedy } = req;
  const spec = model.spec;
  const choosing = spec.behaviour === 'judge' || spec.behaviour === 'reasoner';
  const scoring = choosing && SCORE_PROMPT.test(prompt.text) && [...prompt.text.matchAll(Q_MARKER)].length <= 1;
  let setup = choosing && !scoring ? analyseChoices(prompt, model.truth) : undefined;
  if (spec.behaviour === 'reasoner' && setup?.source === 'none') {
    // Without a truth item the reasoner guesses among the options it sees, `[Response X]` blocks included.
    const labelled = new Set([...prompt.text.matchAll(/^\[Response ([A-J])\]/gm)].map((m) => m[1]!)).size;
    if (labelled > setup.k) setup = { ...setup, k: labelled };
  }
  const contents: string[] = [];
  for (let i = 0; i < n; i++) {
    const rng = Rng.from(contentKey, 'choice', String(greedy ? 0 : i));
    switch (spec.behaviour) {
      case 'judge':
      case 'reasoner':
        contents.push(
          scoring ? scoreResponse(spec, prompt, rng) : multipleChoice(spec, prompt, setup!, rng, Rng.from(contentKey, 'hint', String(greedy ? 0 : i))),
        );
        break;
      case 'rewriter':
        contents.push(rewriter(spec, prompt, rng));
        break;
      case 'policy':
        contents.push(policy(spec, prompt, rng, model.answers));
        break;
      case 'negatives':
        contents.push(negatives(spec, prompt, rng));
        break;
      case 'captioner':
        contents.push(captioner(spec, rng));
        break;
      case 'grader':
        contents.push(grader(spec, prompt, rng, greedy));
        break;
    }
  }
  return { contents, choices: setup };
}
