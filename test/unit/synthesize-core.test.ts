import { describe, expect, it } from 'vitest';
import {
  assembleItem,
  DEFAULT_REFUSAL_PATTERNS,
  DEFAULT_TEMPLATES,
  filterNegatives,
  normalizedEditDistance,
  renderNegativePrompt,
  unknownPlaceholders,
} from '../../activities/synthesize/core.js';

const refusals = DEFAULT_REFUSAL_PATTERNS.map((p) => new RegExp(p, 'i'));

describe('normalizedEditDistance', () => {
  it('is Levenshtein over normalized text divided by the longer length', () => {
    expect(normalizedEditDistance('The cat.', 'the  CAT')).toBe(0);
    expect(normalizedEditDistance('kitten', 'sitting')).toBeCloseTo(3 / 7, 10);
    expect(normalizedEditDistance('', '')).toBe(0);
    expect(normalizedEditDistance('abc', '')).toBe(1);
  });
  it('returns 1 early when the distance cannot be below the bound, exact below it', () => {
    expect(normalizedEditDistance('kitten', 'sitting', 0.2)).toBe(1);
    expect(normalizedEditDistance('a long answer about circles', 'a long answer about circle', 0.2)).toBeCloseTo(1 / 27, 10);
  });
});

describe('filterNegatives', () => {
  it('names why each negative is rejected, in order', () => {
    const ref = 'The shape is a red circle.';
    const out = filterNegatives(
      ref,
      [
        null,
        '  ',
        'x'.repeat(50),
        "I'm sorry, but I can't help with that.",
        'the shape is a red circle',
        'The shape is a blue square.',
        'The shape is a blue square!',
        'A green triangle.',
      ],
      {
        maxChars: 40,
        nearIdentical: 0.1,
        refusals,
      },
    );
    expect(out.map((o) => o.status)).toEqual(['request_failed', 'empty', 'overlong', 'refusal', 'near_identical', 'kept', 'duplicate', 'kept']);
    expect(out[5]!.distance).toBeGreaterThan(0.1);
  });
});

describe('assembleItem', () => {
  const negatives = [
    { index: 0, text: 'n0' },
    { index: 1, text: 'n1' },
    { index: 2, text: 'n2' },
    { index: 3, text: 'n3' },
  ];
  it('keeps the reference, at most K-1 negatives, and is reproducible from (seed, item key)', () => {
    const a = assembleItem('ref', negatives, 3, 7, 'item-1');
    expect(a.candidates).toHaveLength(3);
    expect(a.candidates[a.best]).toBe('ref');
    expect(a.origins[a.best]).toBeNull();
    a.origins.forEach((o, p) => o !== null && expect(a.candidates[p]).toBe(`n${o}`));
    expect(assembleItem('ref', negatives, 3, 7, 'item-1')).toEqual(a);
    expect(assembleItem('ref', negatives.slice(0, 1), 4, 7, 'item-1').candidates).toHaveLength(2);
  });
  it('places the best uniformly over positions (chi-square over 3,000 items)', () => {
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 3000; i++) counts[assembleItem('ref', negatives, 4, 1, `k${i}`).best]!++;
    const chi2 = counts.reduce((acc, c) => acc + (c - 750) ** 2 / 750, 0);
    expect(chi2).toBeLessThan(16.27); // 3 df, p = 0.001
  });
});

describe('templates', () => {
  it('the built-in templates show the question and the reference and use known placeholders only', () => {
    for (const t of Object.values(DEFAULT_TEMPLATES)) {
      expect(unknownPlaceholders(t)).toEqual([]);
      const text = renderNegativePrompt(t, { question: 'Q?', reference: 'R.', errorType: 'x' });
      expect(text).toContain('Q?');
      expect(text).toContain('<reference>R.</reference>');
    }
    expect(unknownPlaceholders('{question} {answer}')).toEqual(['answer']);
  });
});
