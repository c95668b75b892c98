/** Locating truth candidates in prompts (pure functions, no HTTP). */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildTruthIndex, locateCandidates, parseTruthJsonl } from '../../sim/truth.js';
import { judgePrompt, LAYOUTS, VLRB_PATH } from './helpers.js';

describe('truth index', () => {
  it('parses and indexes the 1,250 VL-RewardBench records in well under a second', () => {
    const t0 = performance.now();
    const items = parseTruthJsonl(readFileSync(VLRB_PATH, 'utf8'), VLRB_PATH);
    const index = buildTruthIndex(items);
    expect(performance.now() - t0).toBeLessThan(500);
    expect(items).toHaveLength(1250);
    expect(items.filter((i) => i.best === 0)).toHaveLength(1245);
    expect(index.items[0]).toMatchObject({ id: 'LRVInstruction-000000007746', best: 1 });
  });

  it('finds every record, in both orders, in every prompt layout', () => {
    const items = parseTruthJsonl(readFileSync(VLRB_PATH, 'utf8'), VLRB_PATH);
    const index = buildTruthIndex(items);
    const wrong: string[] = [];
    for (const layout of Object.keys(LAYOUTS)) {
      for (const item of items) {
        for (const swap of [false, true]) {
          const options = swap ? [item.candidates[1]!, item.candidates[0]!] : item.candidates;
          // Queries may quote candidates (MMMU options); positions follow the responses.
          const m = locateCandidates(index, judgePrompt(item.id, options, layout));
          const expected = swap ? 1 - item.best : item.best;
          if (!m || m.positions.length !== 2 || m.bestPosition !== expected) wrong.push(`${layout}/${item.id}/${swap}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('one candidate a prefix of another, a candidate quoted in the query, short candidates', () => {
    const index = buildTruthIndex([
      { id: 'p', candidates: ['The answer is 4', 'The answer is 4 because two plus two is four, as everyone knows.'], best: 1 },
      { id: 'q', candidates: ['B. The right one.', 'C. Neither of them.'], best: 0 },
      { id: 'r', candidates: ['6', '3'], best: 1 },
    ]);
    const p1 = locateCandidates(index, judgePrompt('2+2?', ['The answer is 4 because two plus two is four, as everyone knows.', 'The answer is 4']));
    expect(p1).toMatchObject({ item: { id: 'p' }, positions: [1, 0], bestPosition: 0 });
    const p2 = locateCandidates(index, judgePrompt('2+2?', ['The answer is 4', 'The answer is 4 because two plus two is four, as everyone knows.']));
    expect(p2).toMatchObject({ item: { id: 'p' }, positions: [0, 1], bestPosition: 1 });
    const query = 'Which painting?\nA. The left one.\nB. The right one.\nC. Neither of them.';
    const q = locateCandidates(index, judgePrompt(query, ['C. Neither of them.', 'B. The right one.']));
    expect(q).toMatchObject({ item: { id: 'q' }, bestPosition: 1 });
    const r = locateCandidates(index, judgePrompt('How many?', ['3', '6']));
    expect(r).toMatchObject({ item: { id: 'r' }, bestPosition: 0 });
    // "3 apples" does not match the candidate "3".
    expect(locateCandidates(index, judgePrompt('How many?', ['3 apples', '6 pears']))).toBeUndefined();
  });

  it('reports bad lines with file and line number', () => {
    expect(() => parseTruthJsonl('{"candidates": ["a"], "best": 3}\n', 'x.jsonl')).toThrow('x.jsonl:1: `best` must be an index into `candidates`');
    expect(() => parseTruthJsonl('\n{oops\n', 'y.jsonl')).toThrow(/^y\.jsonl:2: not valid JSON/);
    expect(() => parseTruthJsonl('{"query": "q"}\n', 'z.jsonl')).toThrow('z.jsonl:1: neither a VL-RewardBench record');
  });
});
