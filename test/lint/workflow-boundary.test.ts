/**
 * The workflow boundary is enforced by ESLint (eslint.config.js). The fixture breaks it the ways a
 * line-matching check missed (imports over several lines) and the plain ways; every offence must be
 * reported by the rule meant for it, and nothing else. The real workflow code must lint clean.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ESLint } from 'eslint';
import { REPO } from '../helpers/env.js';

async function lint(patterns: string[], ignore = true) {
  const eslint = new ESLint({ cwd: REPO, ignore });
  return eslint.lintFiles(patterns);
}

describe('workflow boundary (ESLint)', () => {
  it('reports each offence of the bad workflow fixture with its rule, on its line', async () => {
    // The fixture is excluded from `npm run lint`; here it is linted with the project config.
    const [result] = await lint([join(REPO, 'test', 'lint', 'fixtures', 'bad-workflow.ts')], false);
    const found = result!.messages.map((m) => `${m.line} ${m.ruleId}`);
    expect(found).toEqual([
      '5 @typescript-eslint/no-restricted-imports', // import { readFileSync, } from 'node:fs' over 3 lines
      '8 @typescript-eslint/no-restricted-imports', // activity code imported as a value, over 4 lines
      '12 @typescript-eslint/no-import-type-side-effects', // import { type Db } leaves `import '…/db/client.js'`
      '13 @typescript-eslint/no-restricted-imports', // db module as a value
      '14 @typescript-eslint/no-restricted-imports', // pg
      '15 @typescript-eslint/consistent-type-imports', // a type imported as a value
      '29 no-restricted-globals', // process
      '29 no-restricted-properties', // process.env
      '30 no-restricted-properties', // Math.random
      '31 no-restricted-globals', // setTimeout
    ]);
    const byLine = (line: number) => result!.messages.filter((m) => m.line === line).map((m) => m.message);
    expect(byLine(5)[0]).toMatch(/'node:fs'.*side effects belong in activities/);
    expect(byLine(8)[0]).toMatch(/activities\/records\.js'.*only as `import type`/);
    expect(result!.errorCount).toBe(10);
  });

  it('lints the workflow code (workflows/, test workflows, activities/**/types.ts) clean', async () => {
    const results = await lint([
      'workflows',
      'test/helpers/workflows.ts',
      'test/helpers/stage-workflows.ts',
      'test/inference/workflows.ts',
      'test/replay',
      'activities/**/types.ts',
    ]);
    expect(results.length).toBeGreaterThanOrEqual(7);
    const problems = results.flatMap((r) => r.messages.map((m) => `${r.filePath}:${m.line} ${m.ruleId} ${m.message}`));
    expect(problems).toEqual([]);
  });
});
