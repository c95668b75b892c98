/**
 * The spec check keeps its last dataset loads for the next check of the same file (the resident
 * launcher checks spec after spec over one dataset): what a user relies on is that a dataset file
 * changed in between is read again, never that an old load is used for it.
 */
import { readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO } from '../../helpers/env.js';
import { specFromObject, writeSpec } from '../../helpers/spec.js';
import '../../../spec/builtin.js';

const ROWS = readFileSync(join(REPO, 'data/vl-rewardbench/data.jsonl'), 'utf8').split('\n').slice(0, 12);

// Files younger than the check's settling time are not kept: wait it out so the first load is kept.
const settle = () => new Promise((r) => setTimeout(r, 1_100));

describe('the spec check over a dataset file checked before', () => {
  const data = join(dirname(writeSpec('x: 1')), 'data.jsonl');
  afterAll(() => rmSync(dirname(data), { recursive: true, force: true }));
  const spec = (name: string) =>
    specFromObject({
      name,
      seed: 1,
      endpoints: { judge: { base_url: 'http://127.0.0.1:9/v1', model: 'judge' } },
      datasets: { vlrb: { path: data } },
      stages: [{ id: 'eval', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge' } }],
    });

  it('uses the load of an unchanged file again, and reads a changed one again, even at the same size and modification time', async () => {
    // A whole second in the past as modification time: the changed file below gets exactly the same.
    const mtime = Math.floor(Date.now() / 1000) - 60;
    writeFileSync(data, `${ROWS.join('\n')}\n`);
    utimesSync(data, mtime, mtime);
    await settle();
    const first = await spec('memo-a');
    const again = await spec('memo-b');
    expect(first.warnings).toEqual([]);
    expect(first.sources?.get('vlrb')?.items).toHaveLength(12);
    expect(again.sources?.get('vlrb')).toBe(first.sources?.get('vlrb'));

    // One row made invalid, the file's size kept and its modification time set back.
    const before = statSync(data, { bigint: true });
    const broken = ROWS.map((r, i) => (i === 3 ? r.replace('"human_ranking"', '"human_rankinX"') : r));
    expect(broken.join('\n').length).toBe(ROWS.join('\n').length);
    writeFileSync(data, `${broken.join('\n')}\n`);
    utimesSync(data, mtime, mtime);
    expect(statSync(data, { bigint: true }).mtimeNs).toBe(before.mtimeNs);
    expect(statSync(data, { bigint: true }).size).toBe(before.size);
    const changed = await spec('memo-c');
    expect(changed.sources?.get('vlrb')?.items).toHaveLength(11);
    expect(changed.warnings).toEqual([expect.stringMatching(/datasets\.vlrb: 1 row\(s\) skipped: line 4: /)]);
    expect(changed.sources?.get('vlrb')?.contentHash).not.toBe(first.sources?.get('vlrb')?.contentHash);

    // Changed back: read again, not the load of the changed file.
    writeFileSync(data, `${ROWS.join('\n')}\n`);
    const restored = await spec('memo-d');
    expect(restored.warnings).toEqual([]);
    expect(restored.sources?.get('vlrb')?.items).toHaveLength(12);
    expect(restored.sources?.get('vlrb')?.contentHash).toBe(first.sources?.get('vlrb')?.contentHash);
  });
});
