import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseChoice, type ChoiceForm } from '../../../activities/evaluate/parse.js';
import { labelFor, type LabelStyle } from '../../../activities/evaluate/prompt.js';

interface Case {
  name: string;
  output: string;
  k?: number;
  labels?: LabelStyle;
  position: number | null;
  form?: ChoiceForm;
  conflict?: true;
}

const cases: Case[] = [
  // explicit forms
  { name: 'answer tag', output: '<answer>B</answer>', position: 1, form: 'answer_tag' },
  { name: 'answer tag with spaces and lower case', output: '<answer> b </answer>', position: 1, form: 'answer_tag' },
  { name: 'answer tag holding "Response A"', output: 'Done.\n<answer>Response A</answer>', position: 0, form: 'answer_tag' },
  { name: 'answer tag holding a sentence', output: '<answer>The best response is B.</answer>', position: 1, form: 'answer_tag' },
  { name: 'answer tag holding \\boxed', output: '<answer>\\boxed{A}</answer>', position: 0, form: 'answer_tag' },
  { name: 'answer tag cut off by max tokens', output: '<think>x</think>\n<answer>B', position: 1, form: 'answer_tag' },
  { name: 'answer tag naming a position that does not exist', output: '<answer>C</answer>', k: 2, position: null, form: 'answer_tag' },
  { name: 'answer tag holding no label', output: '<answer>Both are equally good</answer>', position: null, form: 'answer_tag' },
  { name: 'boxed', output: 'So the final answer is \\boxed{B}', position: 1, form: 'boxed' },
  { name: 'boxed with \\text', output: '$\\boxed{\\text{A}}$', position: 0, form: 'boxed' },
  { name: 'double brackets', output: 'My verdict: [[A]]', position: 0, form: 'double_bracket' },
  { name: 'official "Answer 2"', output: 'Overall Judgment: Answer 2 is better.', position: 1, form: 'answer_phrase' },
  { name: 'official wording with a comparison', output: 'Overall Judgment: Answer 1 is slightly better than Answer 2.', position: 0, form: 'answer_phrase' },
  { name: '"Answer 2" closing a line', output: 'Therefore, Answer 2\nThat is all.', position: 1, form: 'answer_phrase' },
  { name: 'naming both answers is no choice', output: 'Answer 1 and Answer 2 are both partly wrong.', position: null },
  { name: '"Answer: B"', output: 'Answer: B', position: 1, form: 'answer_phrase' },
  { name: '"Response B is better than Response A"', output: 'Response B is better than Response A.', position: 1, form: 'is_better' },
  { name: '"B is the best response"', output: 'In the end B is the best response.', position: 1, form: 'is_better' },
  { name: 'markdown "**Answer:** A"', output: '**Answer:** A', position: 0, form: 'answer_phrase' },
  { name: '"the answer is Response B"', output: 'Hence the answer is Response B.', position: 1, form: 'answer_phrase' },
  { name: 'reasoning about A, answer B', output: 'A is worse than B, so the answer is B', position: 1, form: 'answer_phrase' },
  // thinking is ignored
  { name: 'answer inside think is ignored', output: '<think>The answer is A</think><answer>B</answer>', position: 1, form: 'answer_tag' },
  { name: 'only thinking, closed', output: '<think>The answer is A</think>', position: null },
  { name: 'unclosed think with no tag after', output: '<think>Response A is better. The answer is A', position: null },
  { name: 'unclosed think, answer tag after', output: '<think>Response A looks better... <answer>B</answer>', position: 1, form: 'answer_tag' },
  { name: 'closing tag only (think opened in the prompt)', output: 'The answer is A, surely.\n</think>\n<answer>B</answer>', position: 1, form: 'answer_tag' },
  { name: 'several think blocks', output: '<think>Answer: A</think>Hmm.<think>[[A]]</think>Answer: B', position: 1, form: 'answer_phrase' },
  // the last explicit answer wins
  { name: 'last of two explicit forms', output: 'Answer: A\nOn reflection, \\boxed{B}', position: 1, form: 'boxed' },
  { name: 'explicit form beats later prose', output: '<answer>B</answer>\nNote: Response A is better at detail.', position: 1, form: 'answer_tag' },
  // prose fallbacks
  { name: '"the best response is B"', output: 'After comparing both, the best response is B.', position: 1, form: 'best_is' },
  { name: '"Response B is better"', output: 'Response A hallucinates a dog. Response B is better.', position: 1, form: 'is_better' },
  {
    name: 'two "is better" clauses: the last',
    output: 'Response A is better in detail, but Response B is clearly better overall.',
    position: 1,
    form: 'is_better',
  },
  { name: '"is not better" is no choice', output: 'Response A is not better than the other one.', position: null },
  { name: '"I choose"', output: 'Weighing accuracy first, I would choose Response A', position: 0, form: 'choose' },
  { name: 'bold label', output: 'My pick: **B**', position: 1, form: 'bold' },
  { name: 'bold heading "**Response A**" is not a choice', output: '**Response A**: describes a cat.\n**Response B**: describes a dog.', position: null },
  { name: 'bare label on the last line', output: 'Both describe the scene; one invents a dog.\n\nB', position: 1, form: 'final_line' },
  { name: 'bare "(A)" on the last line', output: 'Final verdict below.\n(A)', position: 0, form: 'final_line' },
  // label styles
  { name: 'numbers: <answer>2</answer>', output: '<answer>2</answer>', labels: 'numbers', position: 1, form: 'answer_tag' },
  { name: 'numbers: a letter in a tag maps too', output: '<answer>B</answer>', labels: 'numbers', position: 1, form: 'answer_tag' },
  { name: 'letters: a number in a tag maps too', output: '<answer>1</answer>', labels: 'letters', position: 0, form: 'answer_tag' },
  { name: 'numbers: out of range in a tag', output: '<answer>3</answer>', labels: 'numbers', k: 2, position: null, form: 'answer_tag' },
  { name: 'K = 4 letters', output: '<answer>D</answer>', k: 4, position: 3, form: 'answer_tag' },
  { name: 'K = 12 numbers', output: 'Answer: 11', k: 12, labels: 'numbers', position: 10, form: 'answer_phrase' },
  { name: 'numbers: bare number on last line', output: 'Comparing them:\n2', labels: 'numbers', position: 1, form: 'final_line' },
  { name: 'letters: bare number on last line is not a label', output: 'The count is\n2', labels: 'letters', position: null },
  { name: 'numbers: "Response 2 is better"', output: 'Response 2 is better.', labels: 'numbers', position: 1, form: 'is_better' },
  // no choice / traps
  { name: 'cannot decide', output: 'I cannot decide.', position: null },
  { name: 'empty output', output: '', position: null },
  { name: '"answer a question" is not label a', output: 'Both try to answer a question about the chart.', position: null },
  { name: 'pronoun I after "Answer:"', output: 'Answer: I think both are wrong.', k: 12, position: null },
  {
    name: 'a number in an answer phrase that is content, not a label',
    output: 'The correct answer is 12 apples, and the better response is A.',
    position: 0,
    form: 'best_is',
  },
  { name: '"Both" in a tag is not B', output: '<answer>Both</answer>', position: null, form: 'answer_tag' },
  { name: 'pronoun I opening a tag', output: '<answer>I think B</answer>', position: null, form: 'answer_tag' },
  { name: 'pronoun I, then a choice, in a tag', output: '<answer>I choose B</answer>', position: 1, form: 'answer_tag' },
  { name: 'article opening a tag is not label a', output: '<answer>a tie</answer>', position: null, form: 'answer_tag' },
  { name: 'degenerate repetition, no answer', output: 'Response A is detailed. '.repeat(5000), position: null },
  // what a real small model writes (SmolLM2-135M-Instruct; the corpus below has hundreds more)
  { name: '"the best response is indeed A"', output: 'The best response is indeed A.', position: 0, form: 'best_is' },
  { name: 'the template placeholder "indeed X" is no label', output: 'The best response is indeed X.', position: null },
  { name: '"indeed Label A"', output: 'The best response is indeed Label A.', position: 0, form: 'best_is' },
  { name: 'bare label on the first line, then reasons', output: 'A\n\nA suitable response for A is response A.', position: 0, form: 'first_line' },
  { name: 'first-line label and a different last-line label conflict', output: 'A\nSome thoughts.\nB', position: null, form: 'final_line', conflict: true },
  {
    name: 'both verdict lines of the template echoed: no choice',
    output: 'Overall Judgment: Response 1 is better\nOverall Judgment: Response 2 is better',
    labels: 'numbers',
    position: null,
    form: 'is_better',
    conflict: true,
  },
  {
    name: 'a quoted example verdict is not a verdict',
    output: 'One line of the form "Overall Judgment: Response 1 is better"',
    labels: 'numbers',
    position: null,
  },
  { name: 'an answer given in quotes after a colon', output: 'The best response is: "The best response is A."', position: 0, form: 'best_is' },
  { name: 'a quoted label is still a choice', output: 'Response "B" is better.', position: 1, form: 'is_better' },
  { name: '"1 or 2 is the best" names no choice', output: 'So, answer 1 or 2 is the best.', labels: 'numbers', position: null },
  {
    name: '"the other answer is 2" is not a choice',
    output: 'The other answer is label 2.\nThe answer is label 1.',
    labels: 'numbers',
    position: 0,
    form: 'answer_phrase',
  },
  { name: '"A is the correct answer"', output: 'A is the correct answer to the second question.', position: 0, form: 'is_better' },
  {
    name: 'two answer tags naming different labels: no choice',
    output: '<answer>A</answer> or maybe <answer>B</answer>',
    position: null,
    form: 'answer_tag',
    conflict: true,
  },
  {
    name: 'a first-line label the text then calls bad',
    output: 'A\nLabel 1: Bad response  Choices: A\nLabel 2: Good response  Choices: B',
    position: null,
    form: 'first_line',
    conflict: true,
  },
  { name: 'a first-line label, the other one called wrong', output: 'B\nResponse A is wrong about the count.', position: 1, form: 'first_line' },
  { name: 'an ordinal verdict', output: 'The second answer is the best.', position: 1, form: 'is_better' },
  {
    name: 'an ordinal verdict compared with another',
    output: 'The first one is better than the second one.',
    labels: 'numbers',
    position: 0,
    form: 'is_better',
  },
  {
    name: 'bold headings give way to a verdict',
    output: '**A**: describes a cat.\n**B**: describes a dog.\nThe best response is B.',
    position: 1,
    form: 'best_is',
  },
  { name: 'a judgment on one aspect is not the verdict', output: 'Response A is better in detail. Response B is better.', position: 1, form: 'is_better' },
];

describe('parseChoice', () => {
  it('has at least 30 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
  });

  it.each(cases)('$name', ({ output, k = 2, labels = 'letters', position, form, conflict }) => {
    const got = parseChoice(output, k, labels);
    expect(got.position).toBe(position);
    if (form !== undefined) expect(got.form).toBe(form);
    if (position === null && form === undefined) expect(got.form).toBeUndefined();
    expect(got.conflict).toBe(conflict);
  });
});

interface LabelledOutput {
  id: string;
  labels: LabelStyle;
  k: number;
  output: string;
  /** The choice a person read in the output ("A", "2", …), or "none". */
  label: string;
}

/** Real outputs of real models on judge prompts, each labelled by reading it (see the folder's README). */
function loadJudgeOutputs(): LabelledOutput[] {
  const dir = fileURLToPath(new URL('../../fixtures/judge-outputs/', import.meta.url));
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .flatMap((f) =>
      readFileSync(join(dir, f), 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as LabelledOutput),
    );
}

describe('parseChoice on real judge outputs', () => {
  const corpus = loadJudgeOutputs();
  const read = (r: LabelledOutput) => {
    const { position } = parseChoice(r.output, r.k, r.labels);
    return position === null ? 'none' : labelFor(position, r.labels);
  };
  const show = (r: LabelledOutput) => `${r.id}: labelled ${r.label}, parsed ${read(r)}: ${JSON.stringify(r.output.slice(0, 300))}`;

  it('has at least 300 labelled outputs, unique ids, labels that exist', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(300);
    expect(new Set(corpus.map((r) => r.id)).size).toBe(corpus.length);
    for (const r of corpus) {
      const valid = ['none', ...Array.from({ length: r.k }, (_, p) => labelFor(p, r.labels))];
      expect(valid, r.id).toContain(r.label);
    }
  });

  it('agrees with at least 99% of the labels', () => {
    const disagree = corpus.filter((r) => read(r) !== r.label);
    expect(disagree.length / corpus.length, disagree.map(show).join('\n')).toBeLessThanOrEqual(0.01);
  });

  it('never reads a choice from an output that names none', () => {
    const none = corpus.filter((r) => r.label === 'none');
    expect(none.length).toBeGreaterThan(50);
    expect(none.filter((r) => read(r) !== 'none').map(show)).toEqual([]);
  });

  it('never reads the other choice from an output that names one', () => {
    expect(corpus.filter((r) => r.label !== 'none' && read(r) !== 'none' && read(r) !== r.label).map(show)).toEqual([]);
  });
});
