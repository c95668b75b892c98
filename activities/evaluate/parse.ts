import type { LabelStyle } from './prompt.js';

/**
 * The result of reading a judge's output: the 0-based display position it chose, or null when
 * no choice can be read (or the choice names a position that does not exist). `form` names the
 * answer form that decided, also when it decided "null" (e.g. `<answer>C</answer>` with K = 2).
 */
export interface ParsedChoice {
  position: number | null;
  form?: ChoiceForm;
  /** The deciding statements name different choices, or call the marked label bad (the position is then null). */
  conflict?: true;
}

/**
 * Answer forms, strongest first. Explicit forms: `answer_tag` `<answer>B</answer>`, `boxed`
 * `\boxed{B}`, `double_bracket` `[[B]]`, `answer_phrase` "Answer: B" / "Answer 2" / "the answer
 * is B". Prose forms, read only when no explicit form is present: verdicts `best_is` "the best
 * response is B", `is_better` "Response B is better", `choose` "I choose B"; then marks `bold`
 * `**B**`, `first_line` a bare label alone on the first line with more text after it,
 * `final_line` a bare label alone on the last line.
 */
export type ChoiceForm =
  'answer_tag' | 'boxed' | 'double_bracket' | 'answer_phrase' | 'best_is' | 'is_better' | 'choose' | 'bold' | 'first_line' | 'final_line';

interface Hit {
  index: number;
  form: ChoiceForm;
  position: number | null;
}

type Resolved = { position: number } | { position: null; outOfRange: true } | undefined;

const TOKEN = String.raw`([A-Za-z]|\d{1,3})(?![A-Za-z0-9])`;
const NOUN = String.raw`(?:Response|Option|Candidate|Answer|Choice|Label)`;

/**
 * Reads the judge's choice from its output. Everything inside `<think>…</think>` is ignored; so
 * is everything before a `</think>` that has no opening tag (templates that open the thought in
 * the prompt). After an unclosed `<think>` only an `<answer>` tag counts.
 *
 * The forms come in four tiers, and the strongest tier present decides: structural forms (tag,
 * box, [[ ]]), answer phrases ("Answer: B"), verdicts in prose ("the best response is B",
 * "Response B is better", "I choose B"), then marks (`**B**`, a bare label on the first or last
 * line). When the statements of the deciding tier name different choices ("Response 1 is better
 * … Response 2 is better"), the output names no single choice and the result is null with
 * `conflict: true`: small models echo both options of a template, and a guess would be a choice
 * the judge did not make. A mark is also overruled (null, `conflict`) by the text calling the
 * same label bad, wrong or worse. Statements wholly inside double quotes are citations, not
 * choices (a quote right after a colon is the judge's own answer).
 *
 * Letters and numbers are both accepted in structural forms and answer phrases ("Answer 2" →
 * position 1 under letter labels); prose takes the configured style only, unless a noun makes it
 * unambiguous ("Response 2 is better"). A structural form naming a position ≥ k gives null; in
 * phrases an out-of-range token is taken as content ("the answer is 12", "the best response is
 * X"), not as a choice.
 */
export function parseChoice(output: string, k: number, labels: LabelStyle): ParsedChoice {
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`parseChoice: k must be a positive integer, got ${k}`);
  const { visible, tail } = stripThinking(output);

  const structural: Hit[] = [];
  let rest = visible;
  rest = collect(rest, /<answer>([\s\S]*?)(?:<\/answer>|$)/gi, 'answer_tag', structural, (m) => fromContent(m[1] ?? '', k, labels));
  rest = collect(rest, /\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}/g, 'boxed', structural, (m) => fromContent(m[1] ?? '', k, labels));
  rest = collect(rest, /\[\[([^[\]\n]{1,40})\]\]/g, 'double_bracket', structural, (m) => fromContent(m[1] ?? '', k, labels));
  if (tail !== undefined) {
    collect(tail, /<answer>([\s\S]*?)(?:<\/answer>|$)/gi, 'answer_tag', structural, (m) => fromContent(m[1] ?? '', k, labels), visible.length);
  }
  if (structural.length > 0) return decide(structural);

  for (const tier of PHRASE_TIERS) {
    const hits: Hit[] = [];
    phraseHits(rest, k, labels, hits, tier);
    if (hits.length === 0) continue;
    const verdict = decide(hits);
    // A mark is the weakest reading: the text calling that very label bad overrides it.
    if (tier === 'mark' && verdict.position !== null && calledBad(rest, verdict.position, k, labels))
      return { position: null, form: verdict.form, conflict: true };
    return verdict;
  }
  return { position: null };
}

/** One tier's verdict: its statements agree, or the output names no single choice. */
function decide(hits: Hit[]): ParsedChoice {
  const final = last(hits)!;
  const named = new Set(hits.map((h) => h.position));
  if (named.size > 1) return { position: null, form: final.form, conflict: true };
  return { position: final.position, form: final.form };
}

function last(hits: Hit[]): Hit | undefined {
  let best: Hit | undefined;
  for (const h of hits) if (!best || h.index >= best.index) best = h;
  return best;
}

/** Splits the output into the part outside reasoning and, after an unclosed `<think>`, the tail. */
function stripThinking(output: string): { visible: string; tail?: string } {
  // Replace closed blocks by same-length blanks so indexes keep their order meaning.
  let text = output.replace(/<think>[\s\S]*?<\/think>/gi, (m) => ' '.repeat(m.length));
  const closeRe = /<\/think>/gi;
  let lastClose = -1;
  for (let m = closeRe.exec(text); m !== null; m = closeRe.exec(text)) lastClose = m.index + m[0].length;
  if (lastClose >= 0) text = ' '.repeat(lastClose) + text.slice(lastClose);
  const open = text.search(/<think>/i);
  if (open >= 0) return { visible: text.slice(0, open), tail: text.slice(open) };
  return { visible: text };
}

/** Records every match of `re` as a hit and blanks it out so weaker forms do not re-read it. */
function collect(text: string, re: RegExp, form: ChoiceForm, hits: Hit[], resolve: (m: RegExpExecArray) => Resolved, offset = 0): string {
  let out = '';
  let from = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    const r = resolve(m);
    // A tag or box that holds no label is still the judge's explicit (non-)answer.
    hits.push({ index: offset + m.index, form, position: r ? r.position : null });
    out += text.slice(from, m.index) + ' '.repeat(m[0].length);
    from = m.index + m[0].length;
  }
  return out + text.slice(from);
}

/** Maps a label token to a position. `anyStyle` accepts letters and numbers whatever the labels. */
function resolveToken(token: string, k: number, labels: LabelStyle, anyStyle: boolean): Resolved {
  if (/^\d+$/.test(token)) {
    if (labels !== 'numbers' && !anyStyle) return undefined;
    const n = Number(token);
    return n >= 1 && n <= k ? { position: n - 1 } : { position: null, outOfRange: true };
  }
  if (/^[A-Za-z]$/.test(token)) {
    if (labels !== 'letters' && !anyStyle) return undefined;
    const n = token.toUpperCase().charCodeAt(0) - 65;
    return n < k ? { position: n } : { position: null, outOfRange: true };
  }
  return undefined;
}

/** The label inside an answer tag, a box or double brackets; both label styles, any case. */
function fromContent(raw: string, k: number, labels: LabelStyle): Resolved {
  let s = raw;
  // Unwrap LaTeX and markdown decorations: \boxed{\text{B}}, **B**, `B`, $B$.
  for (let i = 0; i < 3; i++) s = s.replace(/\\(?:boxed|text|textbf|mathrm|mathbf)\s*\{((?:[^{}]|\{[^{}]*\})*)\}/g, '$1');
  s = s.replace(/[*`$"“”']/g, ' ').trim();
  const lead = new RegExp(
    String.raw`^(?:(?:the\s+)?(?:final\s+)?(?:best\s+)?(?:answer|response|option|candidate|choice)(?:\s+is)?\s*(?:[:\-]\s*)?)?(?:[([]\s*)?` +
      TOKEN +
      String.raw`(?:\s*[)\]])?(?=$|[\s.,;:!])`,
    'i',
  );
  const m = lead.exec(s);
  if (m) {
    const token = m[1]!;
    const after = s.slice(m[0].length);
    // "a cat…", "I think…": an article or a pronoun opening a sentence, not a label.
    const word = after.trim() !== '' && (/^[a-z]$/.test(token) || (token === 'I' && /^\s+[a-z']/.test(after)));
    const r = word ? undefined : resolveToken(token, k, labels, true);
    if (r) return r;
  }
  // A sentence inside the tag ("Response B is better"): read it with the phrase forms.
  for (const tier of PHRASE_TIERS) {
    const inner: Hit[] = [];
    phraseHits(s, k, labels, inner, tier);
    if (inner.length === 0) continue;
    const d = decide(inner);
    return d.position !== null ? { position: d.position } : undefined;
  }
  return undefined;
}

interface PhraseForm {
  form: ChoiceForm;
  re: RegExp;
  /** The token may be in the other label style (a noun or the word "answer" names it a label). */
  anyStyle: boolean | ((m: RegExpExecArray) => boolean);
}

// "…better than Answer 2", "1 or 2 is the best", "the other answer is 2": not a choice.
const NOT_COMPARED = String.raw`(?<!\b(?:than|over|versus|vs\.?|and|or|to|other)\s+)`;
// Adverbs a verdict may carry: "B is indeed the better one", "the best response is clearly A".
const ADVERB = String.raw`(?:indeed|clearly|definitely|certainly|obviously|actually|probably|likely|truly|really|arguably|therefore|thus|overall)`;
// "A is better in detail": a judgment on one aspect, not the verdict ("better in this case" is one).
const NOT_ASPECT = String.raw`(?!\s+(?:in|at)\s+(?!(?:this|that|the|overall|general|every|all|most|short)\b))`;
const BETTER =
  String.raw`(?:(?:${ADVERB}|slightly|much|significantly|the|a)\s+)*(?:better|best|preferred|superior|stronger|winner|more\s+(?:accurate|helpful|appropriate|correct|faithful)|(?:correct|right)\s+(?:answer|response|choice|one))\b` +
  NOT_ASPECT;

const EXPLICIT_PHRASES: PhraseForm[] = [
  {
    form: 'answer_phrase',
    // "Answer: B", "the final answer is B", "**Answer:** B", "Answer - Response B"
    re: new RegExp(
      NOT_COMPARED + String.raw`\b(?:final\s+)?answer(?:\s*\*\*)?(?:\s+is\b(?:[ \t]*:)?|\s*[:=\-])\s*(?:\*\*\s*)?(?:${NOUN}\s+)?(?:[([]\s*)?` + TOKEN,
      'gi',
    ),
    anyStyle: true,
  },
  {
    form: 'answer_phrase',
    // The official VL-RewardBench wording: "Answer 2 is better", "Answer 1 is slightly better".
    re: new RegExp(NOT_COMPARED + String.raw`\banswer\s*(?:[([]\s*)?` + TOKEN + String.raw`(?:\s*[)\]])?\s+(?:is|was)\s+` + BETTER, 'gi'),
    anyStyle: true,
  },
  {
    form: 'answer_phrase',
    // "Answer 2" closing a line.
    re: new RegExp(NOT_COMPARED + String.raw`\banswer\s*(?:[([]\s*)?` + TOKEN + String.raw`(?:\s*[)\]])?[.!]?[ \t]*(?=\n|$)`, 'gi'),
    anyStyle: true,
  },
];

const PROSE_PHRASES: PhraseForm[] = [
  {
    form: 'best_is',
    // "the best response is B", "the better option is Response 2"
    re: new RegExp(
      String.raw`\b(?:best|better|preferred|superior|winning|stronger)\s+(?:response|option|candidate|choice)\s+(?:here\s+)?is(?:\s+${ADVERB})?(?:[ \t]*:[ \t]*|\s+)(?:\*\*\s*)?(?:${NOUN}\s+)?(?:[([]\s*)?` +
        TOKEN,
      'gi',
    ),
    anyStyle: (m) => new RegExp(String.raw`${NOUN}\s+(?:[([]\s*)?[A-Za-z0-9]+$`, 'i').test(m[0]),
  },
  {
    form: 'is_better',
    // "Response B is better", "B is clearly the better response", "Response 2 is preferred"
    re: new RegExp(NOT_COMPARED + String.raw`(?:\b${NOUN}\s*)?(?:[([“"]\s*)?\b` + TOKEN + String.raw`(?:\s*[)\]”"])?\s+(?:is|was)\s+` + BETTER, 'gi'),
    anyStyle: (m) => new RegExp(String.raw`^${NOUN}`, 'i').test(m[0]),
  },
  {
    form: 'is_better',
    // "The second answer is the best", "the first response is better": an ordinal names the position.
    re: new RegExp(
      NOT_COMPARED + String.raw`\b(first|second|third|fourth|fifth)\s+(?:response|answer|option|candidate|choice|one)\s+(?:is|was)\s+` + BETTER,
      'gi',
    ),
    anyStyle: true,
  },
  {
    form: 'choose',
    // "I choose B", "I would pick Response 2"
    re: new RegExp(String.raw`\bI\s+(?:would\s+|will\s+)?(?:choose|pick|select|prefer|go\s+with|vote\s+for)\s+(?:${NOUN}\s+)?(?:[([]\s*)?` + TOKEN, 'gi'),
    anyStyle: (m) => new RegExp(String.raw`${NOUN}\s+(?:[([]\s*)?[A-Za-z0-9]+$`, 'i').test(m[0]),
  },
];

// Labels set apart rather than stated (read with the first and last lines): the weakest tier.
const MARK_PHRASES: PhraseForm[] = [
  {
    form: 'bold',
    // "**B**", "**(B)**" — not "**Response A**", which is a heading in an analysis
    re: new RegExp(String.raw`\*\*\s*(?:[([]\s*)?` + TOKEN + String.raw`(?:\s*[)\]])?\s*(?:[.:]\s*)?\*\*`, 'g'),
    anyStyle: false,
  },
];

const ORDINALS: Record<string, string> = { first: '1', second: '2', third: '3', fourth: '4', fifth: '5' };

/** The phrase tiers after the structural forms, strongest first. */
type PhraseTier = 'answer' | 'verdict' | 'mark';
const PHRASE_TIERS: readonly PhraseTier[] = ['answer', 'verdict', 'mark'];
const PHRASES: Record<PhraseTier, PhraseForm[]> = { answer: EXPLICIT_PHRASES, verdict: PROSE_PHRASES, mark: MARK_PHRASES };

const BAD = String.raw`(?:bad|worse|worst|wrong|incorrect|poor)`;
// "Bad response  Choices: A", "the worst answer is B", "Response A is wrong", "A is the worse one".
const CALLED_BAD = [
  new RegExp(String.raw`\b${BAD}\s+(?:response|answer|choice|option)s?\b[^\n]{0,20}?(?<![A-Za-z0-9])` + TOKEN, 'gi'),
  new RegExp(String.raw`(?:\b${NOUN}\s*)?(?<![A-Za-z0-9])` + TOKEN + String.raw`\s+(?:is|was)\s+(?:(?:the|a|clearly|much)\s+)*${BAD}\b`, 'gi'),
];

/** Whether the text calls the label of `position` bad, wrong or worse. */
function calledBad(text: string, position: number, k: number, labels: LabelStyle): boolean {
  for (const re of CALLED_BAD) {
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const token = m[1]!;
      if (/^[a-z]$/.test(token)) continue;
      const r = resolveToken(token, k, labels, false);
      if (r && r.position === position) return true;
    }
  }
  return false;
}

/**
 * [open, close] indexes of the double-quoted spans of one line, except a quote that follows a
 * colon: `The best response is: "The best response is A."` gives its own answer in quotes.
 */
function quotedSpans(text: string): [number, number][] {
  const spans: [number, number][] = [];
  for (const m of text.matchAll(/(:\s*)?("[^"\n]{1,400}"|“[^”\n]{1,400}”)/g)) {
    if (m[1] === undefined) spans.push([m.index, m.index + m[0].length - 1]);
  }
  return spans;
}

/** Adds the hits of the phrase forms; letters must be upper case (a lone "a" is an article). */
function phraseHits(text: string, k: number, labels: LabelStyle, hits: Hit[], tier: PhraseTier): void {
  const forms = PHRASES[tier];
  const quotes = quotedSpans(text);
  for (const { form, re, anyStyle } of forms) {
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const start = m.index;
      const end = m.index + m[0].length;
      // A statement wholly inside quotes is cited (often the template's own example), not made.
      if (quotes.some(([qs, qe]) => start > qs && end <= qe)) continue;
      const word = m[1]!;
      if (/^[a-z]$/.test(word)) continue;
      const token = ORDINALS[word.toLowerCase()] ?? word;
      // "Answer: I think…" — the pronoun, not label I.
      if (token === 'I' && /^\s*(?:'|’|[a-z])/.test(text.slice(m.index + m[0].length))) continue;
      const r = resolveToken(token, k, labels, typeof anyStyle === 'function' ? anyStyle(m) : anyStyle);
      if (!r || r.position === null) continue;
      hits.push({ index: m.index, form, position: r.position });
    }
  }
  if (tier === 'mark') {
    for (const h of [firstLine(text, k, labels), finalLine(text, k, labels)]) if (h) hits.push(h);
  }
}

/** A label alone on a line: "B", "(B)", "**B**", "Response B.", "Final choice: 2". */
function bareLabel(rawLine: string, k: number, labels: LabelStyle): number | undefined {
  const line = rawLine.replace(/[*#>`"“”]/g, ' ').trim();
  const m = new RegExp(
    String.raw`^(?:(?:final\s+)?(?:choice|verdict|decision)\s*(?:[:\-]\s*)?)?(${NOUN}\s+)?(?:[([]\s*)?` + TOKEN + String.raw`(?:\s*[)\]])?\.?$`,
    'i',
  ).exec(line);
  if (!m) return undefined;
  const token = m[2]!;
  if (/^[a-z]$/.test(token)) return undefined;
  const r = resolveToken(token, k, labels, m[1] !== undefined);
  return r && r.position !== null ? r.position : undefined;
}

/** A bare label on the last non-empty line. */
function finalLine(text: string, k: number, labels: LabelStyle): Hit | undefined {
  const trimmed = text.trimEnd();
  const start = trimmed.lastIndexOf('\n') + 1;
  const position = bareLabel(trimmed.slice(start), k, labels);
  return position === undefined ? undefined : { index: start, form: 'final_line', position };
}

/** A bare label on the first non-empty line, followed by more text (the answer, then its reasons). */
function firstLine(text: string, k: number, labels: LabelStyle): Hit | undefined {
  const lead = /^\s*/.exec(text)![0].length;
  const end = text.indexOf('\n', lead);
  if (end < 0 || text.slice(end).trim() === '') return undefined;
  const position = bareLabel(text.slice(lead, end), k, labels);
  return position === undefined ? undefined : { index: lead, form: 'first_line', position };
}
