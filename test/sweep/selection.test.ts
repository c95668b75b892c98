/** The pure core of `sweep`: candidate sets, strategies over a scripted judge, graders, the curve. */
import { describe, expect, it } from 'vitest';
import { computeCurve } from '../../activities/sweep/curve.js';
import { extractFinalAnswer, gradeByRule, mmvetGraderPrompt, normalizeAnswer, parseGraderScore } from '../../activities/sweep/graders.js';
import { parseScore } from '../../activities/sweep/prompts.js';
import { candidateSets, canonicalOrder, knockoutCalls, select, type SelectionContext, type Strategy, type Verdict } from '../../activities/sweep/selection.js';
import { gradeByRule as simGrade, lastTableRow } from '../../sim/behaviours.js';
import { sweepParams, strategiesOf } from '../../spec/kinds/sweep.js';

/** A context whose judge always picks the sample with the highest `quality`, and records what it was asked. */
function scripted(quality: number[], asked: string[] = []): SelectionContext {
  return {
    seed: 3,
    question: 'q1',
    answers: quality.map((q) => (q > 0.5 ? 'yes' : 'no')),
    grades: quality.map((q) => (q > 0.5 ? 1 : 0)),
    verdict: (key: string): Verdict => {
      asked.push(key);
      if (key.startsWith('score:')) return { score: 1 + Math.round(9 * quality[Number(key.slice(6))]!) };
      const order = key.slice(3).split(',').map(Number);
      let best = 0;
      order.forEach((s, i) => {
        if (quality[s]! > quality[order[best]!]!) best = i;
      });
      return { position: best };
    },
  };
}

const ko = (k: number): Strategy => ({ name: `knockout-k${k}`, kind: 'knockout', k, positions: 'one' });

describe('candidate sets', () => {
  it('replicate 0 is the first N; resamples are N distinct of n_max, independent of the other N', () => {
    const sets = candidateSets(7, 'q', 4, 16, 3);
    expect(sets[0]).toEqual([0, 1, 2, 3]);
    for (const s of sets) {
      expect(new Set(s).size).toBe(4);
      expect(s.every((x) => x >= 0 && x < 16)).toBe(true);
    }
    expect(candidateSets(7, 'q', 4, 16, 5).slice(0, 4)).toEqual(sets);
    expect(canonicalOrder(7, 'q', [5, 1, 9])).toEqual(canonicalOrder(7, 'q', [9, 5, 1]));
  });
});

describe('strategies', () => {
  const quality = [0.1, 0.9, 0.3, 0.2, 0.8, 0.95, 0.4, 0.05, 0.6, 0.2, 0.3, 0.35, 0.7, 0.15, 0.25, 0.45];
  const all = Array.from({ length: 16 }, (_, i) => i);

  it('knockout in groups of 4 on 16 asks 5 multiple-choice judgments and finds the best of a perfect judge', () => {
    const asked: string[] = [];
    const ctx = scripted(quality, asked);
    const needs = select(ko(4), all, { ...ctx, verdict: () => undefined });
    expect(needs.status === 'needs' && needs.requests.length).toBe(4);
    const r = select(ko(4), all, ctx);
    expect(r).toMatchObject({ status: 'done', sample: 5 });
    expect(r.status === 'done' && r.calls.length).toBe(5);
    expect([16, 8, 5, 2, 1].map((n) => knockoutCalls(n, 4))).toEqual([5, 3, 2, 1, 0]);
    expect(knockoutCalls(16, 2)).toBe(15);
  });

  it('a knockout group over a set shows it in the same order as multiple choice over that set: one request', () => {
    const ctx = scripted(quality);
    const mc = select({ name: 'mc', kind: 'mc', k: 4, positions: 'one' }, [0, 1, 2, 3], ctx);
    const k4 = select(ko(4), [0, 1, 2, 3], ctx);
    expect(mc.status === 'done' && k4.status === 'done' && mc.calls).toEqual(k4.status === 'done' ? k4.calls : []);
    expect(select({ name: 'mc', kind: 'mc', k: 4, positions: 'one' }, [0, 1, 2, 3, 4], ctx).status).toBe('n/a');
    const cyclic = select({ name: 'mc', kind: 'mc', k: 4, positions: 'cyclic' }, [0, 1, 2, 3], ctx);
    expect(cyclic.status === 'done' && cyclic.calls.length).toBe(4);
  });

  it('pairwise asks every pair (both orders with swap), score every answer; both find the best', () => {
    const ctx = scripted(quality);
    const set = [0, 1, 2, 3, 4, 5];
    const pw = select({ name: 'pairwise', kind: 'pairwise', swap: false }, set, ctx);
    expect(pw).toMatchObject({ status: 'done', sample: 5 });
    expect(pw.status === 'done' && pw.calls.length).toBe(15);
    const sw = select({ name: 'pairwise', kind: 'pairwise', swap: true }, set, ctx);
    expect(sw.status === 'done' && sw.calls.length).toBe(30);
    const sc = select({ name: 'score', kind: 'score' }, set, ctx);
    expect(sc).toMatchObject({ status: 'done', sample: 5, calls: set.map((s) => `score:${s}`) });
  });

  it('majority takes the most frequent answer, oracle the best grade, random is seeded; none asks the judge', () => {
    const ctx: SelectionContext = { ...scripted(quality), answers: ['a', 'b', 'b', 'c', 'a', 'b'], verdict: () => undefined };
    const set = [0, 1, 2, 3, 4, 5];
    expect(select({ name: 'majority', kind: 'majority' }, set, ctx)).toEqual({ status: 'done', sample: 1, calls: [] });
    expect(select({ name: 'oracle', kind: 'oracle' }, set, ctx)).toMatchObject({ status: 'done', calls: [] });
    expect(ctx.grades[(select({ name: 'oracle', kind: 'oracle' }, set, ctx) as { sample: number }).sample]).toBe(1);
    const r1 = select({ name: 'random', kind: 'random' }, set, ctx);
    expect(select({ name: 'random', kind: 'random' }, set, ctx)).toEqual(r1);
  });

  it('score: the highest score wins; a tie is broken by the seed (the same pick every time, not always the first)', () => {
    const set = [0, 1, 2, 3, 4, 5, 6, 7];
    const flat = (question: string, seed = 3): SelectionContext => ({
      ...scripted(quality),
      seed,
      question,
      verdict: (key: string) => ({ score: key === 'score:7' ? 2 : 9 }),
    });
    const picks = Array.from({ length: 40 }, (_, i) => select({ name: 'score', kind: 'score' }, set, flat(`q${i}`)));
    for (const r of picks) {
      expect(r.status).toBe('done');
      expect(set.slice(0, 7)).toContain((r as { sample: number }).sample);
    }
    // Seeded: the same question and seed pick the same sample; over questions the picks spread over the tied samples.
    expect(select({ name: 'score', kind: 'score' }, set, flat('q0'))).toEqual(picks[0]);
    expect(new Set(picks.map((r) => (r as { sample: number }).sample)).size).toBeGreaterThan(3);
    // An unreadable score counts as 0.
    const unread = select({ name: 'score', kind: 'score' }, [0, 1], { ...flat('q0'), verdict: (key: string) => ({ score: key === 'score:0' ? null : 1 }) });
    expect(unread).toMatchObject({ status: 'done', sample: 1 });
  });

  it('an unreadable judgment is no vote: the pick falls to the seeded tie-break among the set', () => {
    const ctx: SelectionContext = { ...scripted(quality), verdict: () => ({ position: null }) };
    const r = select({ name: 'mc', kind: 'mc', k: 4, positions: 'one' }, [0, 1, 2, 3], ctx);
    expect(r.status).toBe('done');
    expect([0, 1, 2, 3]).toContain((r as { sample: number }).sample);
  });
});

describe('graders and parsers', () => {
  it('reads final answers and grades by rule', () => {
    expect(extractFinalAnswer('Answer (q=0.8): blah.\nFinal answer: Triangle.')).toBe('Triangle.');
    expect(extractFinalAnswer('<think>Final answer: no</think>so \\boxed{42}')).toBe('42');
    expect(normalizeAnswer(' The Red. ')).toBe('red');
    expect(gradeByRule({ kind: 'normalized' }, 'The Red.', 'red')).toBe(1);
    expect(gradeByRule({ kind: 'exact' }, 'Red', 'red')).toBe(0);
    expect(gradeByRule({ kind: 'numeric', tolerance: 0.05, relative: false }, 'about 3.14', '3.1')).toBe(1);
    expect(gradeByRule({ kind: 'numeric', tolerance: 0.01, relative: true }, '1,020', '1000')).toBe(0);
    expect(gradeByRule({ kind: 'mc-letter' }, '(B) the dog', 'B')).toBe(1);
    expect(gradeByRule({ kind: 'mc-letter' }, 'option c', 'B')).toBe(0);
  });

  it('the MM-Vet prompt ends with the row to complete; the grader output parser takes 0.0–1.0 only', () => {
    const prompt = mmvetGraderPrompt('Which?', 'a<AND>b', 'line one\nline | two');
    expect(prompt.endsWith('Which? | a <AND> b | line one line / two | ')).toBe(true);
    expect(lastTableRow(prompt)).toEqual({ groundTruth: 'a <AND> b', prediction: 'line one line / two' });
    expect(simGrade('a <AND> b', 'Final answer: b')).toBe(0.5);
    expect(parseGraderScore('0.7')).toBe(0.7);
    expect(parseGraderScore('1.0 because…')).toBe(1);
    expect(parseGraderScore('The correctness is 0.6')).toBeUndefined();
    expect(parseGraderScore('1.5')).toBeUndefined();
    expect(parseScore('<think>maybe 3</think><score>8</score>')).toBe(8);
    expect(parseScore('I give it 7/10')).toBe(7);
    expect(parseScore('no number')).toBeUndefined();
  });
});

describe('the curve', () => {
  it('means ×100 per strategy, N and capability, with bootstrap intervals and costs', () => {
    const point = (grades: number[]) => new Map([['random|1', grades.map((g) => ({ grade: g, judgeCalls: 2, tokens: 10, costUsd: 0.5 }))]]);
    const points = computeCurve({
      strategies: ['random'],
      ns: [1],
      questions: [
        { capabilities: ['ocr'], points: point([1, 0]) },
        { capabilities: ['ocr', 'math'], points: point([1, 1]) },
        { capabilities: [], points: point([0, 0]) },
      ],
      bootstrap: 500,
      seed: 1,
    });
    const by = new Map(points.map((p) => [p.capability, p]));
    expect(by.get('total')!.score).toBeCloseTo(50, 9);
    expect(by.get('ocr')!.score).toBeCloseTo(75, 9);
    expect(by.get('math')!.score).toBeCloseTo(100, 9);
    expect(by.get('total')).toMatchObject({ questions: 3, policySamples: 3, judgeCalls: 6, tokens: 30, costUsd: 1.5 });
    expect(by.get('total')!.ciLow!).toBeLessThan(50);
    expect(by.get('total')!.ciHigh!).toBeGreaterThan(50);
    expect(by.get('math')).toMatchObject({ ciLow: 100, ciHigh: 100 });
  });

  it('spec strategies get names and defaults', () => {
    const p = sweepParams.parse({
      items: 'x',
      policy: 'p',
      judge: 'j',
      strategies: ['mc', { kind: 'knockout', k: 2 }, { kind: 'pairwise', swap: true, name: 'pw' }],
    });
    expect(strategiesOf(p)).toEqual([
      { name: 'mc', kind: 'mc', k: 4, positions: 'one' },
      { name: 'knockout-k2', kind: 'knockout', k: 2, positions: 'one' },
      { name: 'pw', kind: 'pairwise', swap: true },
    ]);
  });
});
