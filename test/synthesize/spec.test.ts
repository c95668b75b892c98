/** `from:` references and the data a stage takes, checked before anything starts (the real CLI, exit 2). */
import { relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { REPO, uniqueName } from '../helpers/env.js';
import { writeSpec } from '../helpers/spec.js';

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]).toString('base64');

function chain(name: string) {
  const qa = writeSpec(`${JSON.stringify({ id: 'a', image: `data:image/png;base64,${PNG}`, question: 'What?', answer: 'That.' })}\n`, 'qa.jsonl');
  return {
    name,
    endpoints: { w: { base_url: 'http://127.0.0.1:9/v1', model: 'writer' }, j: { base_url: 'http://127.0.0.1:9/v1', model: 'judge' } },
    datasets: { qa: { path: qa, format: 'qa-jsonl' }, vlrb: { path: `${REPO}/data/vl-rewardbench/data.jsonl` } },
    stages: [
      { id: 'synth', uses: 'synthesize', with: { items: 'qa', writer: 'w' } } as Record<string, unknown>,
      { id: 'eval', uses: 'evaluate', needs: ['synth'], with: { dataset: { from: 'synth' }, judge: 'j' } } as Record<string, unknown>,
    ],
  };
}
type Spec = ReturnType<typeof chain>;
const withOf = (s: Spec, i: number) => s.stages[i]!.with as Record<string, unknown>;

describe('data references in specs', () => {
  const cases: [string, (s: Spec) => Spec, RegExp][] = [
    [
      'a from: to a stage that is not upstream',
      (s) => ((s.stages[1]!.needs = []), s),
      /stages\[1\]\.with\.dataset\.from: stage "synth" is not upstream of "eval": add it to needs/,
    ],
    [
      'a from: to a missing stage',
      (s) => ((withOf(s, 1).dataset = { from: 'synthesis' }), s),
      /stages\[1\]\.with\.dataset\.from: no stage "synthesis"; stages: synth, eval/,
    ],
    [
      'a from: to a stage whose kind makes no such artifact',
      (s) => {
        s.stages.push({ id: 'late', uses: 'synthesize', needs: ['eval'], with: { items: { from: 'eval' }, writer: 'w' } });
        return s;
      },
      /stages\[2\]\.with\.items\.from: stage "eval" \(evaluate\) produces nothing, not qa-items that items takes/,
    ],
    [
      'a produced kind the parameter does not take',
      (s) => {
        s.stages.push({ id: 'again', uses: 'synthesize', needs: ['synth'], with: { items: { from: 'synth' }, writer: 'w' } });
        return s;
      },
      /stages\[2\]\.with\.items\.from: stage "synth" \(synthesize\) produces items \(mc-items\), not qa-items that items takes/,
    ],
    [
      'a dataset of the wrong kind',
      (s) => ((withOf(s, 0).items = 'vlrb'), ((s.datasets.vlrb as Record<string, unknown>).format = 'vl-rewardbench'), s),
      /stages\[0\]\.with\.items: dataset "vlrb" has format vl-rewardbench, which gives mc-items; items takes qa-items/,
    ],
  ];
  for (const [what, mutate, pattern] of cases) {
    it(`refuses ${what}: exit 2, file and path named`, async () => {
      const path = writeSpec(mutate(chain(uniqueName('refs'))));
      const res = await runCli(['run', path]);
      expect(res.stderr).toMatch(pattern);
      expect(res.stderr).toContain(relative(REPO, path));
      expect(res.code).toBe(2);
    });
  }
});
