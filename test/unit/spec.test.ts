import { describe, expect, it } from 'vitest';
import { SpecError } from '../../spec/load.js';
import { checkDag, dependentsOf, topoOrder } from '../../workflows/dag.js';
import { diamond, specFromObject, writeSpec } from '../helpers/spec.js';
import { loadSpec } from '../../spec/load.js';

async function specError(obj: unknown, sets: string[] = []): Promise<SpecError> {
  const err = await specFromObject(obj, sets).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(SpecError);
  return err as SpecError;
}

describe('DAG helpers', () => {
  it('names duplicate ids, dangling needs and each cycle', () => {
    const issues = checkDag([
      { id: 'a', needs: ['c'] },
      { id: 'b', needs: ['a'] },
      { id: 'c', needs: ['b'] },
      { id: 'd', needs: ['zzz'] },
      { id: 'd', needs: [] },
    ]);
    expect(issues).toContainEqual({ path: 'stages[4].id', message: expect.stringContaining('duplicate stage id "d"') });
    expect(issues).toContainEqual({ path: 'stages[3].needs[0]', message: expect.stringContaining('needs unknown stage "zzz"') });
    expect(issues.filter((i) => i.message.startsWith('cycle:'))).toEqual([{ path: 'stages[0].needs', message: 'cycle: a -> c -> b -> a' }]);
  });
  it('orders and finds dependents', () => {
    const nodes = diamond('x').stages.map((s) => ({ id: s.id, needs: s.needs ?? [] }));
    expect(topoOrder(nodes)).toEqual(['a', 'b', 'c', 'd']);
    expect(dependentsOf(nodes, 'b')).toEqual(['d']);
    expect(dependentsOf(nodes, 'a').sort()).toEqual(['b', 'c', 'd']);
  });
});

describe('spec loading', () => {
  it('hashes canonically: key order and formatting do not matter, overrides do', async () => {
    const a = await specFromObject(diamond('hash-me'));
    const text = `# comment\nstages:\n${diamond('hash-me')
      .stages.map((s) => `  - { with: ${JSON.stringify(s.with)}, uses: ${s.uses}, id: ${s.id}${s.needs ? `, needs: ${JSON.stringify(s.needs)}` : ''} }`)
      .join('\n')}\nseed: 7\nname: hash-me\n`;
    const b = await loadSpec(writeSpec(text));
    expect(b.hash).toBe(a.hash);
    const c = await specFromObject(diamond('hash-me'), ['stages.b.with.items=9']);
    expect(c.hash).not.toBe(a.hash);
    expect((c.spec.stages[1]!.with as { items: number }).items).toBe(9);
    expect(c.overrides).toEqual({ 'stages.b.with.items': 9 });
    const d = await specFromObject(diamond('hash-me'), ['stages[1].with.items=9']);
    expect(d.hash).toBe(c.hash);
  });

  it('refuses a cycle, naming it', async () => {
    const spec = diamond('cyc');
    spec.stages[0]!.needs = ['d'];
    const err = await specError(spec);
    expect(err.message).toMatch(/spec\.yaml: stages\[0\]\.needs: cycle: a -> d -> b -> a/);
  });

  it('refuses an unknown stage kind, listing the allowed ones', async () => {
    const spec = diamond('kind');
    spec.stages[2]!.uses = 'evaluat';
    const err = await specError(spec);
    expect(err.message).toMatch(/stages\[2\]\.uses: unknown stage kind "evaluat"; allowed: .*test-work/);
  });

  it('refuses a dangling need and a field of the wrong type, with paths', async () => {
    const spec = diamond('types') as { stages: { id: string; needs?: string[]; with: Record<string, unknown> }[] };
    spec.stages[3]!.needs = ['b', 'nope'];
    spec.stages[1]!.with = { items: 'many' };
    const err = await specError(spec);
    expect(err.message).toMatch(/stages\[3\]\.needs\[1\]: needs unknown stage "nope"/);
    expect(err.message).toMatch(/stages\[1\]\.with\.items: .*expected number/i);
  });

  it('refuses unknown fields and bad --set flags', async () => {
    expect((await specError({ ...diamond('extra'), seeed: 3 })).message).toMatch(/unknown field\(s\) "seeed"/);
    expect((await specError(diamond('set'), ['stages.zz.with.items=1'])).message).toMatch(/"zz" is neither an index nor an id/);
    expect((await specError(diamond('set'), ['novalue'])).message).toMatch(/expected path=value/);
  });

  it('refuses API keys in place of env var names', async () => {
    const err = await specError({
      ...diamond('keys'),
      endpoints: { judge: { base_url: 'http://127.0.0.1:1/v1', model: 'm', api_key_env: 'sk-live-123' } },
    });
    expect(err.message).toMatch(/endpoints\.judge\.api_key_env: must be an environment variable NAME/);
  });
});
