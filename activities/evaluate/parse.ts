import type { LabelStyle } from './prompt.js';

/**
 * The result of reading a judge's output: the 0-based display position it chose, or null when
 * no choice can be read (or the choice names a position that does not exist). `form` names the
 * answer form that decided, also when it decided "null" (e.g. `<answer>C</answer>` with K = 2).
 */
export interface ParsedChoice {
  position: number | null;
  form?: ChoiceForm;
}

/**
 * Answer forms, strongest first. Explicit forms: `answer_tag` `<answer>B</answer>`, `boxed`
 * `\boxed{B}`, `double_bracket` `[[B]]`, `answer_phrase` "Answer: B" / "Answer 2" / "the answer
 * is B". Prose forms, read only when no explicit form is present: `best_is` "the best response is
 * B", `is_better` "Response B is better", `choose` "I choose B", `bold` `**B**`, `final_line` a
 * bare label alone on the last line.
 */
export type ChoiceForm =
  | 'answer_tag'
  | 'boxed'
  | 'double_bracket'
  | 'answer_phrase'
  | 'best_is'
  | 'is_better'
  | 'choose'
  | 'bold'
  | 'final_line';

interface Hit {
  index: number;
  form: ChoiceForm;
  position: number | null;
}

type Resolved = { position: number } | { position: null; outOfRange: true } | undefined;

const TOKEN = String.raw`([A-Za-z]|\d{1,3})(?![A-Za-z0-9])`;
const NOUN = String.raw`(?:Response|Option|Candidate|Answer|Choice)`;

/**
 * Reads the judge's choice from its output. Everything inside `<think>…</think>` is ignored; so
 * is everything before a `</think>` that has no opening tag (templates that open the thought in
 * the prompt). After an unclosed `<think>` only an `<answer>` tag counts. Among explicit forms the
 * LAST one decides; prose forms are a fallback. Letters and numbers are both accepted in explicit
 * forms ("Answer 2" → position 1 under letter labels); prose forms take the configured style only,
 * unless a noun makes it unambiguous ("Response 2 is better"). A structural form (tag, box,
 * [[ ]]) naming a position ≥ k gives null; in phrases an out-of-range token is taken as content
 * ("the answer is 12"), not as a choice.
 */
export function parseChoice(output: string, k: number, labels: LabelStyle): ParsedChoice {
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`parseChoice: k must be a positive integer, got ${k}`);
  const { visible, tail } = stripThinking(output);

  const hits: Hit[] = [];
  let rest = visible;
  rest = collect(rest, /<answer>([\s\S]*?)(?:<\/answer>|$)/gi, 'answer_tag', hits, (m) => fromContent(m[1] ?? '', k, labels));
  rest = collect(rest, /\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}/g, 'boxed', hits, (m) => fromContent(m[1] ?? '', k, labels));
  rest = collect(rest, /\[\[([^[\]\n]{1,40})\]\]/g, 'double_bracket', hits, (m) => fromContent(m[1] ?? '', k, labels));
  if (tail !== undefined) {
    collect(tail, /<answer>([\s\S]*?)(?:<\/answer>|$)/gi, 'answer_tag', hits, (m) => fromContent(m[1] ?? '', k, labels), visible.length);
  }
  phraseHits(rest, k, labels, hits, true);
  const explicit = last(hits);
  if (explicit) return { position: explicit.position, form: explicit.form };

  const prose: Hit[] = [];
  phraseHits(rest, k, labels, prose, false);
  const fallback = last(prose);
  if (fallback) return { position: fallback.position, form: fallback.form };
  return { position: null };
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
function collect(
  text: string,
  re: RegExp,
  form: ChoiceForm,
  hits: Hit[],
  resolve: (m: RegExpExecArray) => Resolved,
  offset = 0,
): string {
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
  const inner: Hit[] = [];
  phraseHits(s, k, labels, inner, true);
  if (inner.length === 0) phraseHits(s, k, labels, inner, false);
  const h = last(inner);
  return h && h.position !== null ? { position: h.position } : undefined;
}

interface PhraseForm {
  form: ChoiceForm;
  re: RegExp;
  /** The token may be in the other label style (a noun or the word "answer" names it a label). */
  anyStyle: boolean | ((m: RegExpExecArray) => boolean);
}

// "…better than Answer 2": the object of a comparison is not a choice.
const NOT_COMPARED = String.raw`(?<!\b(?:than|over|versus|vs\.?|and|to)\s+)`;
const BETTER = String.raw`(?:(?:clearly|slightly|much|significantly|overall|definitely|therefore|thus|the|a)\s+)*(?:better|best|preferred|superior|stronger|winner|more\s+(?:accurate|helpful|appropriate|correct|faithful))\b`;

const EXPLICIT_PHRASES: PhraseForm[] = [
  {
    form: 'answer_phrase',
    // "Answer: B", "the final answer is B", "**Answer:** B", "Answer - Response B"
    re: new RegExp(
      NOT_COMPARED +
        String.raw`\b(?:final\s+)?answer(?:\s*\*\*)?(?:\s+is\b|\s*[:=\-])\s*(?:\*\*\s*)?(?:${NOUN}\s+)?(?:[([]\s*)?` +
        TOKEN,
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
      String.raw`\b(?:best|better|preferred|superior|winning|stronger)\s+(?:response|option|candidate|choice)\s+(?:here\s+)?is\s+(?:\*\*\s*)?(?:${NOUN}\s+)?(?:[([]\s*)?` +
        TOKEN,
      'gi',
    ),
    anyStyle: (m) => new RegExp(String.raw`${NOUN}\s+(?:[([]\s*)?[A-Za-z0-9]+$`, 'i').test(m[0]),
  },
  {
    form: 'is_better',
    // "Response B is better", "B is clearly the better response", "Response 2 is preferred"
    re: new RegExp(
      String.raw`(?:\b${NOUN}\s*)?(?:[([]\s*)?\b` +
        TOKEN +
        String.raw`(?:\s*[)\]])?\s+(?:is|was)\s+` +
        BETTER,
      'gi',
    ),
    anyStyle: (m) => new RegExp(String.raw`^${NOUN}`, 'i').test(m[0]),
  },
  {
    form: 'choose',
    // "I choose B", "I would pick Response 2"
    re: new RegExp(
      String.raw`\bI\s+(?:would\s+|will\s+)?(?:choose|pick|select|prefer|go\s+with|vote\s+for)\s+(?:${NOUN}\s+)?(?:[([]\s*)?` + TOKEN,
      'gi',
    ),
    anyStyle: (m) => new RegExp(String.raw`${NOUN}\s+(?:[([]\s*)?[A-Za-z0-9]+$`, 'i').test(m[0]),
  },
  {
    form: 'bold',
    // "**B**", "**(B)**" — not "**Response A**", which is a heading in an analysis
    re: new RegExp(String.raw`\*\*\s*(?:[([]\s*)?` + TOKEN + String.raw`(?:\s*[)\]])?\s*(?:[.:]\s*)?\*\*`, 'g'),
    anyStyle: false,
  },
];

/** Adds the hits of the phrase forms; letters must be upper case (a lone "a" is an article). */
function phraseHits(text: string, k: number, labels: LabelStyle, hits: Hit[], explicit: boolean): void {
  const forms = explicit ? EXPLICIT_PHRASES : PROSE_PHRASES;
  for (const { form, re, anyStyle } of forms) {
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const token = m[1]!;
      if (/^[a-z]$/.test(token)) continue;
      // "Answer: I think…" — the pronoun, not label I.
      if (token === 'I' && /^\s*(?:'|’|[a-z])/.test(text.slice(m.index + m[0].length))) continue;
      const r = resolveToken(token, k, labels, typeof anyStyle === 'function' ? anyStyle(m) : anyStyle);
      if (!r || r.position === null) continue;
      hits.push({ index: m.index, form, position: r.position });
    }
  }
  if (!explicit) {
    const fl = finalLine(text, k, labels);
    if (fl) hits.push(fl);
  }
}

/** A label alone on the last non-empty line: "B", "(B)", "**B**", "Response B.", "Final choice: 2". */
function finalLine(text: string, k: number, labels: LabelStyle): Hit | undefined {
  const trimmed = text.trimEnd();
  const start = trimmed.lastIndexOf('\n') + 1;
  const line = trimmed.slice(start).replace(/[*#>`"“”]/g, ' ').trim();
  const m = new RegExp(
    String.raw`^(?:(?:final\s+)?(?:choice|verdict|decision)\s*(?:[:\-]\s*)?)?(${NOUN}\s+)?(?:[([]\s*)?` + TOKEN + String.raw`(?:\s*[)\]])?\.?$`,
    'i',
  ).exec(line);
  if (!m) return undefined;
  const token = m[2]!;
  if (/^[a-z]$/.test(token)) return undefined;
  const r = resolveToken(token, k, labels, m[1] !== undefined);
  if (!r || r.position === null) return undefined;
  return { index: start, form: 'final_line', position: r.position };
}
