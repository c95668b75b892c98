/** The pure core of distill: reading traces, verdicts and their reasons, hint leaks, the seeded split. */
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_HINT_PATTERNS,
  DEFAULT_REASON_TEMPLATE,
  isValidation,
  judgeReasoning,
  judgeRewrite,
  leakedHint,
  readTrace,
  renderReasonPrompt,
  stripAnswer,
  traceHash,
  traceWithAnswer,
} from '../../../activities/distill/core.js';

const opts = { k: 3, best: 1, labels: 'letters' as const, maxTraceTokens: 100 };
const ok = (content: string, reasoning: string | null = null, completionTokens = 50) => ({ ok: true, content, reasoning, completionTokens });

describe('readTrace', () => {
  it('takes reasoning_content when present, else the <think> block, else the text without its answer', () => {
    expect(readTrace('<answer>B</answer>', 'Step one. Step two.')).toEqual({ trace: 'Step one. Step two.', answer: '<answer>B</answer>' });
    expect(readTrace('<think>\nI look.\n</think>\n<answer>C</answer>', null)).toEqual({ trace: 'I look.', answer: '\n<answer>C</answer>' });
    expect(readTrace('Plain reasoning here.\n\nFinal answer: <answer>A</answer>', '  ')).toEqual({
      trace: 'Plain reasoning here.',
      answer: 'Plain reasoning here.\n\nFinal answer: <answer>A</answer>',
    });
  });
});

describe('judgeReasoning', () => {
  it('accepts the right choice and names the reason of every rejection', () => {
    expect(judgeReasoning(ok('<think>x</think><answer>B</answer>'), opts)).toMatchObject({ reason: null, choice: 1, trace: 'x' });
    expect(judgeReasoning(ok('<think>x</think><answer>C</answer>'), opts)).toMatchObject({ reason: 'wrong_choice', choice: 2 });
    expect(judgeReasoning(ok('<think>x</think>I cannot tell.'), opts)).toMatchObject({ reason: 'unparseable', choice: null });
    expect(judgeReasoning(ok('<think>x</think><answer>D</answer>'), opts)).toMatchObject({ reason: 'unparseable' });
    expect(judgeReasoning(ok('<think>x</think><answer>B</answer>', null, 101), opts)).toMatchObject({ reason: 'over_length', tokens: 101 });
    expect(judgeReasoning({ ok: false, content: '', reasoning: null, completionTokens: 0 }, opts)).toMatchObject({ reason: 'request_failed' });
    // An answer inside the thinking does not count; the one after it does.
    expect(judgeReasoning(ok('<think>maybe <answer>A</answer></think><answer>B</answer>'), opts)).toMatchObject({ reason: null, choice: 1 });
  });
});

describe('judgeRewrite', () => {
  it('keeps the rewritten trace, rejects a changed or missing answer', () => {
    expect(judgeRewrite(ok('The image shows a circle.\n\n<answer>B</answer>'), opts)).toEqual({ reason: null, trace: 'The image shows a circle.' });
    expect(judgeRewrite(ok('The image shows a circle.\n\n<answer>A</answer>'), opts).reason).toBe('rewrite_changed_choice');
    expect(judgeRewrite(ok('The image shows a circle.'), opts).reason).toBe('rewrite_changed_choice');
    expect(judgeRewrite({ ok: false, content: '', reasoning: null, completionTokens: 0 }, opts).reason).toBe('request_failed');
  });
  it('round-trips the text the rewriter is given', () => {
    expect(stripAnswer(traceWithAnswer('  Some steps.  ', 'B'))).toBe('Some steps.');
  });
});

describe('hint leaks', () => {
  const patterns = DEFAULT_HINT_PATTERNS.map((p) => new RegExp(p, 'i'));
  it('finds a mention of the hint, the expert or a suggested answer, and nothing in a clean trace', () => {
    expect(leakedHint('The Hint points to B.', patterns)).toBe('\\bhint(s|ed)?\\b');
    expect(leakedHint('As the expert said, B.', patterns)).toBe('\\bexpert\\b');
    expect(leakedHint('The image shows a red circle, so B.', patterns)).toBeNull();
    expect(leakedHint('This is a thinking process.', patterns)).toBeNull();
  });
});

describe('the reason prompt', () => {
  it('fills every placeholder and shows the hint only when given', () => {
    const base = { caption: 'A red circle.', question: 'What shape?', candidates: ['square', 'circle'], labels: 'letters' as const };
    const withHint = renderReasonPrompt(DEFAULT_REASON_TEMPLATE, { ...base, hint: 'Hint: look at B.' });
    expect(withHint).toContain('[Description]\nA red circle.');
    expect(withHint).toContain('[Response A]\nsquare\n\n[Response B]\ncircle\n');
    expect(withHint).toContain('Hint: look at B.\n\nWhich response answers the question about the image best: A or B?');
    const without = renderReasonPrompt(DEFAULT_REASON_TEMPLATE, { ...base, hint: null });
    expect(without).not.toMatch(/hint/i);
    expect(without).not.toMatch(/\{[a-z_]+\}/);
  });
});

describe('split and hashes', () => {
  it('puts about the given fraction in validation, the same items for the same seed', () => {
    const keys = Array.from({ length: 4000 }, (_, i) => `item-${i}`);
    const a = keys.filter((k) => isValidation(7, k, 0.1));
    expect(a.length / keys.length).toBeGreaterThan(0.085);
    expect(a.length / keys.length).toBeLessThan(0.115);
    expect(keys.filter((k) => isValidation(7, k, 0.1))).toEqual(a);
    expect(keys.filter((k) => isValidation(8, k, 0.1))).not.toEqual(a);
    expect(keys.some((k) => isValidation(7, k, 0))).toBe(false);
    expect(traceHash('a', 'x')).toBe(traceHash('a', 'x'));
    expect(traceHash('a', 'x')).not.toBe(traceHash('b', 'x'));
  });
});
