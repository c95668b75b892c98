import { describe, expect, it } from 'vitest';
import { DEFAULT_JUDGE_TEMPLATE, JudgeTemplateError, labelFor, renderJudgePrompt, validateJudgeTemplate } from '../../../activities/evaluate/prompt.js';
import { createRng } from '../../../activities/evaluate/rng.js';
import { applyView, viewsFor } from '../../../activities/evaluate/views.js';

describe('createRng', () => {
  it('reproduces a stream from its seed parts and separates nearby seeds', () => {
    const a = createRng('s', 1);
    const b = createRng('s', 1);
    const c = createRng('s', 2);
    const xs = Array.from({ length: 5 }, () => a.nextUint32());
    expect(Array.from({ length: 5 }, () => b.nextUint32())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c.nextUint32())).not.toEqual(xs);
  });

  it('fillInt draws what as many nextInt calls would, in order, and leaves the stream where they would', () => {
    for (const n of [1, 2, 3, 7, 500, 1250, 3 * 2 ** 19 + 1, 2 ** 21 - 1, 2 ** 21, 2 ** 21 + 1, 3_000_000_000, 2 ** 32]) {
      const one = createRng('fill', n);
      const bulk = createRng('fill', n);
      for (const count of [0, 1, 5, 1000]) {
        const out = new Int32Array(count + 1).fill(-1);
        bulk.fillInt(n, out, count);
        const expected = Array.from({ length: count }, () => one.nextInt(n));
        // (n above 2^31 does not fit an Int32Array: compared as the same 32 bits.)
        expect(Array.from(out.subarray(0, count), (x) => x >>> 0)).toEqual(expected.map((x) => x >>> 0));
        expect(out[count]).toBe(-1);
      }
      expect(bulk.nextUint32()).toBe(one.nextUint32());
    }
  });

  it('draws integers in range, about uniformly, for small and large n', () => {
    const rng = createRng('uniform');
    for (const n of [1, 3, 1250, 2 ** 31 + 1]) {
      const buckets = new Array<number>(Math.min(n, 10)).fill(0);
      let outOfRange = 0;
      for (let i = 0; i < 30_000; i++) {
        const x = rng.nextInt(n);
        if (!(Number.isInteger(x) && x >= 0 && x < n)) outOfRange++;
        else buckets[Math.floor((x / n) * buckets.length)]!++;
      }
      expect(outOfRange).toBe(0);
      for (const count of buckets) expect(Math.abs(count - 30_000 / buckets.length)).toBeLessThan((30_000 / buckets.length) * 0.1);
    }
    const f = rng.nextFloat();
    expect(f >= 0 && f < 1).toBe(true);
    expect(() => rng.nextInt(0)).toThrow(RangeError);
  });
});

describe('viewsFor', () => {
  it('swap: all K cyclic shifts, so every candidate takes every position once', () => {
    expect(viewsFor('swap', 2, 1, 'x')).toEqual([
      [0, 1],
      [1, 0],
    ]);
    const v4 = viewsFor('swap', 4, 1, 'x');
    expect(v4).toEqual([
      [0, 1, 2, 3],
      [1, 2, 3, 0],
      [2, 3, 0, 1],
      [3, 0, 1, 2],
    ]);
    for (let p = 0; p < 4; p++) expect(new Set(v4.map((perm) => perm[p])).size).toBe(4);
  });

  it('none: the identity', () => {
    expect(viewsFor('none', 3, 7, 'x')).toEqual([[0, 1, 2]]);
  });

  it('random: one permutation per item, reproducible from (seed, item key), varying across items and seeds', () => {
    const a = viewsFor('random', 4, 42, 'item-1');
    expect(a).toHaveLength(1);
    expect([...a[0]!].sort()).toEqual([0, 1, 2, 3]);
    expect(viewsFor('random', 4, 42, 'item-1')).toEqual(a);
    const perms = new Set<string>();
    for (let i = 0; i < 200; i++) perms.add(viewsFor('random', 4, 42, `item-${i}`)[0]!.join(''));
    expect(perms.size).toBeGreaterThan(15); // of 24
    const otherSeed = Array.from({ length: 50 }, (_, i) => viewsFor('random', 4, 43, `item-${i}`)[0]!.join(''));
    const sameSeed = Array.from({ length: 50 }, (_, i) => viewsFor('random', 4, 42, `item-${i}`)[0]!.join(''));
    expect(otherSeed).not.toEqual(sameSeed);
  });

  it('random with K = 2 shows the preferred candidate first about half the time', () => {
    let first = 0;
    for (let i = 0; i < 2000; i++) if (viewsFor('random', 2, 'seed', `i${i}`)[0]![0] === 0) first++;
    expect(first / 2000).toBeGreaterThan(0.45);
    expect(first / 2000).toBeLessThan(0.55);
  });

  it('applyView orders the candidates as shown', () => {
    expect(applyView(['a', 'b', 'c'], [2, 0, 1])).toEqual(['c', 'a', 'b']);
    expect(() => applyView(['a', 'b'], [0, 1, 2])).toThrow(RangeError);
  });
});

describe('judge prompt', () => {
  it('labels positions with letters or numbers', () => {
    expect([0, 1, 25].map((p) => labelFor(p, 'letters'))).toEqual(['A', 'B', 'Z']);
    expect([0, 1, 25].map((p) => labelFor(p, 'numbers'))).toEqual(['1', '2', '26']);
    expect(() => labelFor(26, 'letters')).toThrow(RangeError);
  });

  it('renders the default template: criteria, think/answer instructions, labelled candidates at line starts', () => {
    const candidates = ['The cat is black.', 'There are two cats,\none of them white.', 'No cat.'];
    const text = renderJudgePrompt({ query: 'What is in the image?', candidates, labels: 'letters' });
    expect(text).toContain('3 candidate responses labelled A, B, C');
    expect(text).toMatch(/Harmlessness[\s\S]*Accuracy[\s\S]*Detail/);
    expect(text).toContain('<think>');
    expect(text).toContain('<answer>A</answer>');
    expect(text).toContain('[Question]\nWhat is in the image?\n');
    expect(text).toContain('[Response A]\nThe cat is black.\n\n[Response B]\nThere are two cats,\none of them white.\n\n[Response C]\nNo cat.\n');
    expect(text).toContain('A, B or C?');
    for (const c of candidates) {
      const at = text.indexOf(c);
      expect(at).toBeGreaterThan(0);
      expect(text[at - 1]).toBe('\n');
    }
    expect(text).not.toMatch(/\{[a-z_]+\}/);
  });

  it('renders number labels and custom templates in one pass, with literal braces', () => {
    const template = 'Q: {query}\n{candidates}Pick one of {labels} ({k}); reply \\boxed{{X}} or {"choice": 1}; {{query}}';
    const text = renderJudgePrompt({ template, query: 'has {candidates} inside', candidates: ['x', 'y'], labels: 'numbers' });
    expect(text).toBe('Q: has {candidates} inside\n[Response 1]\nx\n\n[Response 2]\ny\nPick one of 1, 2 (2); reply \\boxed{X} or {"choice": 1}; {query}');
  });

  it('rejects unknown placeholders before anything is rendered', () => {
    expect(() => validateJudgeTemplate(DEFAULT_JUDGE_TEMPLATE)).not.toThrow();
    expect(() => renderJudgePrompt({ template: '{qurey} {candidates}', query: 'q', candidates: ['a', 'b'], labels: 'letters' })).toThrow(JudgeTemplateError);
    let caught: unknown;
    try {
      validateJudgeTemplate('{query} {answr}');
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ name: 'JudgeTemplateError', unknownPlaceholders: ['answr'] });
  });
});
