/**
 * Graders of `sweep` (pure): reading a final answer out of a policy output, the rule graders
 * (exact, normalized, numeric with tolerance, multiple-choice letter) and the MM-Vet-style LLM
 * grader's prompt and output parser. No I/O.
 */

/** How the answers of a question are graded (spec/kinds/sweep.ts parses the spec's forms into this). */
export type Grader =
  | { kind: 'exact' }
  | { kind: 'normalized' }
  | { kind: 'numeric'; tolerance: number; relative: boolean }
  | { kind: 'mc-letter' }
  | { kind: 'llm'; endpoint: string; num_runs: number; max_attempts: number; retry_temperature_step: number; max_tokens: number };

/**
 * The final answer of a policy output: the last "Final answer: …" line, else the last `\boxed{…}`,
 * else the last "Answer: …" line, else the last non-empty line. `<think>` blocks are ignored.
 */
export function extractFinalAnswer(output: string): string {
  const text = output.replace(/<think>[\s\S]*?<\/think>/gi, '').trim();
  const finals = [...text.matchAll(/final answer\s*(?:is)?\s*[:：]?\s*([^\n]+)/gi)];
  if (finals.length > 0) return finals[finals.length - 1]![1]!.trim();
  const boxed = [...text.matchAll(/\\boxed\s*\{([^{}]*)\}/g)];
  if (boxed.length > 0) return boxed[boxed.length - 1]![1]!.trim();
  const answers = [...text.matchAll(/^\s*answer\s*[:：]\s*([^\n]+)/gim)];
  if (answers.length > 0) return answers[answers.length - 1]![1]!.trim();
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  return lines[lines.length - 1] ?? '';
}

/** Lower case, markdown and surrounding punctuation removed, whitespace collapsed, a leading article dropped. */
export function normalizeAnswer(s: string): string {
  return s
    .toLowerCase()
    .replace(/[*_`]/g, '')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/^[\s"'.,;:!?()[\]]+|[\s"'.,;:!?()[\]]+$/g, '')
    .replace(/^(?:the|a|an) /, '')
    .trim();
}

function firstNumber(s: string): number | undefined {
  const m = /-?\d[\d,]*(?:\.\d+)?|-?\.\d+/.exec(s);
  if (!m) return undefined;
  const v = Number(m[0].replace(/,/g, ''));
  return Number.isFinite(v) ? v : undefined;
}

/** A multiple-choice letter: `(B)`, `B.`, `B)`, "option B", or a lone letter. */
export function readLetter(s: string): string | undefined {
  const t = s.trim();
  const m = /^\(?([A-Za-z])\)?(?:[.):\s]|$)/.exec(t) ?? /\b(?:option|answer|choice)\s*\(?([A-Za-z])\)?\b/i.exec(t);
  return m ? m[1]!.toUpperCase() : undefined;
}

/** The score (0 or 1) of a final answer under a rule grader. */
export function gradeByRule(grader: Exclude<Grader, { kind: 'llm' }>, answer: string, reference: string): number {
  switch (grader.kind) {
    case 'exact':
      return answer.trim() === reference.trim() ? 1 : 0;
    case 'normalized':
      return normalizeAnswer(answer) === normalizeAnswer(reference) ? 1 : 0;
    case 'numeric': {
      const a = firstNumber(answer);
      const r = firstNumber(reference);
      if (a === undefined || r === undefined) return 0;
      const bound = grader.relative ? grader.tolerance * Math.abs(r) : grader.tolerance;
      return Math.abs(a - r) <= bound + 1e-12 ? 1 : 0;
    }
    case 'mc-letter': {
      const a = readLetter(answer);
      return a !== undefined && a === readLetter(reference) ? 1 : 0;
    }
  }
}

/**
 * The instruction and worked examples of the LLM grader, in MM-Vet's protocol: a table of
 * question, ground truth, prediction and correctness (0.0–1.0 in steps of 0.1), `<AND>` meaning
 * every part is needed and `<OR>` any one part; the grader completes the last row. Our own
 * wording and examples.
 */
export const MMVET_GRADER_INSTRUCTION =
  'Grade how correct the prediction of an AI assistant is, given the question and the ground truth. ' +
  'In a ground truth, <AND> joins parts that must all appear in the prediction for it to be fully right, ' +
  'and <OR> joins alternatives of which any one makes it fully right. ' +
  'The correctness is one of 0.0 (entirely wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9 and 1.0 (entirely right). ' +
  'Reply with the correctness of the last row only.';

export const MMVET_FEW_SHOT: readonly { question: string; truth: string; prediction: string; score: string }[] = [
  { question: 'How many apples are on the plate?', truth: '3', prediction: 'There are three apples.', score: '1.0' },
  { question: 'How many apples are on the plate?', truth: '3', prediction: 'Four apples.', score: '0.0' },
  { question: 'Which fruits are in the bowl?', truth: 'banana <AND> pear', prediction: 'A banana.', score: '0.5' },
  { question: 'Which fruits are in the bowl?', truth: 'banana <AND> pear', prediction: 'A pear and a banana.', score: '1.0' },
  { question: 'What is written on the door?', truth: 'exit <OR> way out', prediction: 'It says "Way out".', score: '1.0' },
  { question: 'What is the total on the receipt?', truth: '12.50', prediction: 'The total is 12.', score: '0.2' },
  { question: 'What is the person doing?', truth: 'riding a bicycle', prediction: 'The person is on a bike, cycling down a hill.', score: '1.0' },
];

const cell = (s: string) =>
  s
    .replace(/\s*\n\s*/g, ' ')
    .replace(/\|/g, '/')
    .trim();

/** The grader prompt for one prediction: the instruction, the example table and the row to complete. */
export function mmvetGraderPrompt(question: string, truth: string, prediction: string): string {
  const gt = truth.replace(/<AND>/g, ' <AND> ').replace(/<OR>/g, ' <OR> ').replace(/\s+/g, ' ').trim();
  const rows = MMVET_FEW_SHOT.map((e) => `${e.question} | ${e.truth} | ${e.prediction} | ${e.score}`);
  return `${MMVET_GRADER_INSTRUCTION}\n\nQuestion | Ground truth | Prediction | Correctness\n--- | --- | --- | ---\n${rows.join('\n')}\n${cell(question)} | ${cell(gt)} | ${cell(prediction)} | `;
}

/** The grader's score: its first token as a number in [0, 1] (rounded to 0.1), else undefined (unparseable). */
export function parseGraderScore(output: string): number | undefined {
  const first =
    output
      .replace(/<think>[\s\S]*?<\/think>/gi, '')
      .trim()
      .split(/\s+/)[0] ?? '';
  if (!/^(?:[01](?:\.\d+)?|\.\d+)$/.test(first)) return undefined;
  const v = Number(first);
  return v >= 0 && v <= 1 ? Math.round(v * 10) / 10 : undefined;
}

/** Temperature of grader attempt `attempt` (0-based): 0 first, raised by `step` after each unparseable output, at most 2. */
export function graderTemperature(attempt: number, step: number): number {
  return Math.min(2, Math.round(attempt * step * 100) / 100);
}
