import { describe, expect, it } from 'vitest';
import { itemValues, mcnemarExact, normalCdf, pairedAccuracy, pairedBootstrap, pairedValues, twoProportion, wilson } from '../../activities/compare/stats.js';
import { expandAblations, pathExists } from '../../spec/ablations.js';

describe('exact McNemar', () => {
  it('matches hand-computed binomial tails', () => {
    expect(mcnemarExact(0, 5)).toBeCloseTo(2 / 32, 15);
    // b=3, c=10: 2·(C(13,0)+C(13,1)+C(13,2)+C(13,3))/2^13 = 2·(1+13+78+286)/8192
    expect(mcnemarExact(3, 10)).toBeCloseTo((2 * 378) / 8192, 15);
    expect(mcnemarExact(7, 7)).toBe(1);
    expect(mcnemarExact(0, 0)).toBe(1);
    // Large counts stay finite (log space): 400 vs 500 discordant pairs.
    const p = mcnemarExact(400, 500);
    expect(p).toBeGreaterThan(0.0005);
    expect(p).toBeLessThan(0.002);
  });
});

describe('paired bootstrap', () => {
  it('is reproducible by seed and centred on the observed difference', () => {
    const a: number[] = Array.from({ length: 200 }, (_, i) => (i % 3 === 0 ? 0 : 1));
    const b: number[] = Array.from({ length: 200 }, (_, i) => (i % 5 === 0 ? 0 : 1));
    const r1 = pairedBootstrap(a, b, 500, 42);
    expect(pairedBootstrap(a, b, 500, 42)).toEqual(r1);
    expect(pairedBootstrap(a, b, 500, 43).ci).not.toEqual(r1.ci);
    expect(r1.delta).toBeCloseTo(b.reduce((s, x) => s + x, 0) / 200 - a.reduce((s, x) => s + x, 0) / 200, 12);
    expect(r1.ci[0]).toBeLessThan(r1.delta);
    expect(r1.ci[1]).toBeGreaterThan(r1.delta);
    expect(pairedBootstrap(a, a, 100, 1)).toEqual({ delta: 0, ci: [0, 0], p: 1 });
  });
});

describe('per-item scores and paired accuracy', () => {
  const best = new Map([
    ['x', 0],
    ['y', 1],
    ['z', 0],
  ]);
  const s = (itemKey: string, view: number, chosen: number | null, sample = 0) => ({ itemKey, view, sample, chosenCandidate: chosen, outputTokens: 10 });
  it('majority per view, mean over views; excluded drops unparseable views, wrong counts them 0', () => {
    const samples = [s('x', 0, 0), s('x', 1, 1), s('y', 0, null), s('y', 1, 1), s('z', 0, 1, 0), s('z', 0, 0, 1), s('z', 0, 0, 2)];
    const ex = itemValues(samples, best, 'excluded');
    expect([ex.get('x')!.accuracy, ex.get('y')!.accuracy, ex.get('z')!.accuracy]).toEqual([0.5, 1, 1]);
    const wr = itemValues(samples, best, 'wrong');
    expect(wr.get('y')!.accuracy).toBe(0.5);
  });
  it('McNemar counts only items scored 0/1 on both sides; shared counts items judged on both', () => {
    const a = itemValues([s('x', 0, 0), s('y', 0, 0), s('z', 0, 0)], best, 'excluded');
    const b = itemValues([s('x', 0, 1), s('y', 0, 1), s('z', 0, 0), s('z', 1, 1)], best, 'excluded');
    const r = pairedAccuracy(a, b, { resamples: 10, seed: 1 });
    expect(r.shared).toBe(3);
    expect(r.mcnemar).toEqual({ items: 2, b: 1, c: 1, p: 1 });
  });
});

describe('ablations', () => {
  const spec = { stages: [{ id: 'eval', with: { judge: 'a', samples: 1 } }] };
  it('a 2×3 grid gives 6 combinations, first axis slowest, slugs from the values', () => {
    const { combinations, issues } = expandAblations(
      { axes: { judge: { path: 'stages.eval.with.judge', values: ['a', 'b'] }, 'stages.eval.with.samples': [1, 2, 3] }, combinations: 'grid' },
      (p) => pathExists(spec, p),
    );
    expect(issues).toEqual([]);
    expect(combinations.map((c) => c.slug)).toEqual(['a.1', 'a.2', 'a.3', 'b.1', 'b.2', 'b.3']);
    expect(combinations[4]!.sets).toEqual(['stages.eval.with.judge="b"', 'stages.eval.with.samples=2']);
  });
  it('listed combinations are checked against the axes; unknown paths are named', () => {
    const { issues } = expandAblations(
      {
        axes: { judge: { path: 'stages.eval.with.judge', values: ['a', 'b'] }, nope: { path: 'stages.evl.with.x', values: [1] } },
        combinations: [{ judge: 'c', nope: 1 }, { judge: 'a' }],
      },
      (p) => pathExists(spec, p),
    );
    expect(issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      'ablations.axes.nope: path "stages.evl.with.x" names nothing in the spec; use a path like stages.<id>.with.<param> or endpoints.<name>.model',
      'ablations.combinations[0].judge: "c" is not among the axis values ["a","b"]',
      'ablations.combinations[1]: no value for axis "nope"',
    ]);
  });
});

describe('shares: Wilson interval, two-proportion test, normal CDF', () => {
  it('Φ matches tabulated values', () => {
    expect(normalCdf(0)).toBeCloseTo(0.5, 7);
    expect(normalCdf(1.959963984540054)).toBeCloseTo(0.975, 7);
    expect(normalCdf(-1)).toBeCloseTo(0.15865525393145707, 7);
    expect(normalCdf(-3)).toBeCloseTo(0.0013498980316301, 8);
    expect(normalCdf(4)).toBeCloseTo(0.9999683287581669, 8);
  });

  it('Wilson 95% intervals match published values and stay inside [0, 1]', () => {
    // 8/10: (0.4902, 0.9433); 0/20: (0, 0.1611) (Newcombe 1998, table I).
    const a = wilson(8, 10);
    expect([a.rate, a.ciLow!, a.ciHigh!].map((x) => x.toFixed(4))).toEqual(['0.8000', '0.4902', '0.9433']);
    const b = wilson(0, 20);
    expect([b.ciLow, b.ciHigh!.toFixed(4)]).toEqual([0, '0.1611']);
    expect(wilson(0, 0)).toEqual({ k: 0, n: 0, rate: Number.NaN, ciLow: null, ciHigh: null });
  });

  it('two-proportion z-test: pooled z for p, unpooled Wald interval for the difference', () => {
    // 30/100 vs 45/100: pooled 0.375, z = 0.15 / sqrt(0.375·0.625·0.02) = 2.1909, two-sided p = 0.02846.
    const r = twoProportion(30, 100, 45, 100);
    expect(r.delta).toBeCloseTo(0.15, 12);
    expect(r.p).toBeCloseTo(0.028459, 5);
    const se = Math.sqrt((0.3 * 0.7) / 100 + (0.45 * 0.55) / 100);
    expect(r.ci[0]).toBeCloseTo(0.15 - 1.959963984540054 * se, 12);
    expect(r.ci[1]).toBeCloseTo(0.15 + 1.959963984540054 * se, 12);
    expect(twoProportion(0, 10, 0, 12).p).toBe(1);
    expect(Number.isNaN(twoProportion(1, 0, 1, 5).p)).toBe(true);
  });

  it('paired 0/1 values: shared keys only, McNemar on the discordant ones', () => {
    const a = new Map([
      ['x', 1],
      ['y', 0],
      ['z', 1],
      ['only-a', 1],
    ]);
    const b = new Map([
      ['x', 0],
      ['y', 1],
      ['z', 1],
      ['only-b', 0],
    ]);
    const r = pairedValues(a, b, { resamples: 50, seed: 1 });
    expect([r.shared, r.a, r.b]).toEqual([3, 2 / 3, 2 / 3]);
    expect(r.mcnemar).toEqual({ items: 3, b: 1, c: 1, p: 1 });
    expect(r.bootstrap.delta).toBe(0);
  });
});
