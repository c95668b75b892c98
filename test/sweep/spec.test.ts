/** `sweep` specs checked before anything starts (the real CLI, exit 2, file and path named). */
import { relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { REPO, uniqueName } from '../helpers/env.js';
import { writeSpec } from '../helpers/spec.js';

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]).toString('base64');

function base(name: string) {
  const qa = writeSpec(`${JSON.stringify({ id: 'a', image: `data:image/png;base64,${PNG}`, question: 'What?', answer: 'That.' })}\n`, 'qa.jsonl');
  return {
    name,
    endpoints: { p: { base_url: 'http://127.0.0.1:9/v1', model: 'policy' }, j: { base_url: 'http://127.0.0.1:9/v1', model: 'judge' } },
    datasets: { qa: { path: qa, format: 'qa-jsonl' }, vlrb: { path: `${REPO}/data/vl-rewardbench/data.jsonl` } },
    stages: [
      { id: 'bon', uses: 'sweep', with: { items: 'qa', policy: 'p', judge: 'j', n: [1, 2, 4], strategies: ['random', 'mc'] } as Record<string, unknown> },
    ],
  };
}
type Spec = ReturnType<typeof base>;

describe('sweep specs', () => {
  const cases: [string, (w: Record<string, unknown>, s: Spec) => void, RegExp][] = [
    ['judge strategies without a judge', (w) => delete w.judge, /stages\[0\]\.with\.judge: strategies mc need a judge endpoint: add judge: <endpoint>/],
    ['an N above n_max', (w) => ((w.n_max = 2), (w.n = [1, 4])), /stages\[0\]\.with\.n\[1\]: N = 4 is more than n_max = 2/],
    [
      'mc where no N fits in k',
      (w) => ((w.n = [8, 16]), (w.strategies = ['mc'])),
      /stages\[0\]\.with\.strategies\[0\]: mc judges all N at once only when N ≤ k = 4/,
    ],
    ['a strategy listed twice', (w) => (w.strategies = ['random', 'random']), /stages\[0\]\.with\.strategies\[1\]: strategy "random" is listed twice/],
    [
      'an LLM grader endpoint that does not exist',
      (w) => (w.grader = { kind: 'llm', endpoint: 'gpt' }),
      /stages\[0\]\.with: endpoint "gpt" is not defined under endpoints:/,
    ],
    ['a policy template without {question}', (w) => (w.policy_template = 'Answer.'), /stages\[0\]\.with\.policy_template: must contain \{question\}/],
    [
      'multiple-choice data as items',
      (w) => (w.items = 'vlrb'),
      /stages\[0\]\.with\.items: dataset "vlrb" has format vl-rewardbench, which gives mc-items; items takes qa-items/,
    ],
  ];
  for (const [what, mutate, pattern] of cases) {
    it(`refuses ${what}: exit 2`, async () => {
      const spec = base(uniqueName('sweep-spec'));
      mutate(spec.stages[0]!.with, spec);
      if ((spec.stages[0]!.with.items as string) === 'vlrb') (spec.datasets.vlrb as Record<string, unknown>).format = 'vl-rewardbench';
      const path = writeSpec(spec);
      const res = await runCli(['run', path]);
      expect(res.stderr).toMatch(pattern);
      expect(res.stderr).toContain(relative(REPO, path));
      expect(res.code).toBe(2);
    });
  }
});
