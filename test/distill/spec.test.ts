/** A `distill` stage's spec errors are refused before anything starts (the real CLI, exit 2, file and path). */
import { relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { REPO, uniqueName } from '../helpers/env.js';
import { writeSpec } from '../helpers/spec.js';

function chain(name: string) {
  const ep = (model: string) => ({ base_url: 'http://127.0.0.1:9/v1', model });
  return {
    name,
    endpoints: { c: ep('captioner'), r: ep('reasoner'), w: ep('rewriter') },
    datasets: { vlrb: { path: `${REPO}/data/vl-rewardbench/data.jsonl`, format: 'vl-rewardbench' }, easy: { format: 'easy-vqa', split: 'test', limit: 5 } },
    stages: [
      {
        id: 'distill',
        uses: 'distill',
        with: { items: 'vlrb', captioner: 'c', reasoner: 'r', rewrites: [{ name: 'remove-hint', endpoint: 'w' }] } as Record<string, unknown>,
      },
    ],
  };
}
type Spec = ReturnType<typeof chain>;
const w = (s: Spec) => s.stages[0]!.with;

describe('distill spec checks', () => {
  const cases: [string, (s: Spec) => Spec, RegExp][] = [
    [
      'an unknown placeholder in the reason template',
      (s) => ((w(s).reason_template = '{caption} {question} {options} {hint} {answer}'), s),
      /stages\[0\]\.with\.reason_template: unknown placeholder\(s\) \{answer\}/,
    ],
    [
      'a reason template without the hint when hint is on',
      (s) => ((w(s).reason_template = '{caption} {question} {options}'), s),
      /stages\[0\]\.with\.reason_template: the template must contain \{hint\}/,
    ],
    [
      'a rewrite pass without a template that is not built in',
      (s) => ((w(s).rewrites = [{ name: 'polish', endpoint: 'w' }]), s),
      /stages\[0\]\.with\.rewrites\[0\]\.template: no template for rewrite pass "polish": add template \(built-in passes: remove-hint, to-image\)/,
    ],
    ['a rewrite pass on an unknown endpoint', (s) => ((w(s).rewrites = [{ name: 'to-image', endpoint: 'nope' }]), s), /nope/],
    [
      'a hint pattern that is not a regular expression',
      (s) => ((w(s).hint_patterns = ['(hint']), s),
      /stages\[0\]\.with\.hint_patterns\[0\]: not a regular expression/,
    ],
    [
      'an answer template without the trace',
      (s) => ((w(s).answer_template = '<answer>{label}</answer>'), s),
      /stages\[0\]\.with\.answer_template: the template must contain \{trace\}/,
    ],
    [
      'qa-items where mc-items are taken',
      (s) => ((w(s).items = 'easy'), s),
      /stages\[0\]\.with\.items: dataset "easy" has format easy-vqa, which gives qa-items; items takes mc-items/,
    ],
  ];
  for (const [what, mutate, pattern] of cases) {
    it(`refuses ${what}: exit 2, file and path named`, async () => {
      const path = writeSpec(mutate(chain(uniqueName('distill-spec'))));
      const res = await runCli(['run', path]);
      expect(res.stderr).toMatch(pattern);
      expect(res.stderr).toContain(relative(REPO, path));
      expect(res.code).toBe(2);
    });
  }
});
