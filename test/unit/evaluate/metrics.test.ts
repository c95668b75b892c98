import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createRng } from '../../../activities/evaluate/rng.js';
import { computeMetrics, majority, MetricsInputError, type JudgmentRecord, type MetricRow, type ScoredItem } from '../../../activities/evaluate/metrics.js';

const SWAP2 = [
  [0, 1],
  [1, 0],
];

/** One item's judgments from the positions chosen per view and sample ('F' = the request failed). */
function judged(item: ScoredItem & { category: string; subset: string }, perViewPositions: Array<Array<number | null | 'F'>>, perms = SWAP2): JudgmentRecord[] {
  return perViewPositions.flatMap((positions, view) =>
    positions.map((p, sample) => ({
      itemKey: item.itemKey,
      category: item.category,
      subset: item.subset,
      view,
      sample,
      permutation: perms[view]!,
      chosenPosition: p === 'F' ? null : p,
      ...(p === 'F' ? { failed: true } : { outputTokens: 100 + 10 * sample + view, latencyMs: 1000 + sample }),
    })),
  );
}

function row(rows: MetricRow[], metric: string, scope: string, policy: string = ''): MetricRow {
  const r = rows.find((x) => x.metric === metric && x.scope === scope && x.policy === policy);
  if (!r) throw new Error(`no row ${metric} ${scope} ${policy}`);
  return r;
}

// An unbalanced fixture: 4 items in category H, 1 in R; K = 2, both orders, 3 samples per view.
const items = [
  { itemKey: 'i1', best: 0, category: 'H', subset: 'h1' },
  { itemKey: 'i2', best: 0, category: 'H', subset: 'h1' },
  { itemKey: 'i3', best: 1, category: 'H', subset: 'h2' },
  { itemKey: 'i4', best: 0, category: 'H', subset: 'h2' },
  { itemKey: 'i5', best: 0, category: 'R', subset: 'r1' },
];
const [i1, i2, i3, i4, i5] = items as [(typeof items)[0], (typeof items)[0], (typeof items)[0], (typeof items)[0], (typeof items)[0]];
const fixture: JudgmentRecord[] = [
  // view 0 votes candidates 0,0,1 → 0 ✓; view 1 (swapped) positions 1,1,0 → candidates 0,0,1 → 0 ✓
  ...judged(i1, [
    [0, 0, 1],
    [1, 1, 0],
  ]),
  // always position 0: right in view 0, wrong in view 1
  ...judged(i2, [
    [0, 0, 0],
    [0, 0, 0],
  ]),
  // view 0 unparseable; view 1: candidate 1 (sample 0) vs candidate 0 (sample 2), a tie → sample 0's: 1 ✓
  ...judged(i3, [
    [null, null, null],
    [0, null, 1],
  ]),
  // nothing parseable: view 0 failed, view 1 unparseable
  ...judged(i4, [
    ['F', 'F', 'F'],
    [null, null, null],
  ]),
  // view 0 majority candidate 1 ✗; view 1 positions 1,1,1 → candidate 0 ✓
  ...judged(i5, [
    [1, 1, 0],
    [1, 1, 1],
  ]),
];

describe('computeMetrics on a hand-made fixture', () => {
  const rows = computeMetrics(fixture, items, { seed: 7, bootstrap: 500 });

  it('accuracy under `excluded`: unparseable views dropped, an item with none dropped', () => {
    // item scores: i1 1, i2 0.5, i3 1 (one parseable view), i4 dropped, i5 0.5
    expect(row(rows, 'accuracy', 'overall', 'excluded')).toMatchObject({ value: 3 / 4, n: 4 });
    expect(row(rows, 'accuracy', 'category:H', 'excluded')).toMatchObject({ value: 2.5 / 3, n: 3 });
    expect(row(rows, 'accuracy', 'category:R', 'excluded')).toMatchObject({ value: 0.5, n: 1 });
    // macro weighs the 1-item category like the 3-item one: it differs from the pooled number
    expect(row(rows, 'accuracy', 'macro', 'excluded').value).toBeCloseTo((2.5 / 3 + 0.5) / 2, 12);
    expect(row(rows, 'accuracy', 'macro', 'excluded').value).not.toBeCloseTo(row(rows, 'accuracy', 'overall', 'excluded').value, 3);
    expect(row(rows, 'accuracy', 'subset:h1', 'excluded')).toMatchObject({ value: 0.75, n: 2 });
    expect(row(rows, 'accuracy', 'subset:h2', 'excluded')).toMatchObject({ value: 1, n: 1 });
    expect(row(rows, 'accuracy', 'subset:r1', 'excluded')).toMatchObject({ value: 0.5, n: 1 });
  });

  it('accuracy under `wrong`: unparseable views count 0, every judged item stays', () => {
    // item scores: i1 1, i2 0.5, i3 0.5, i4 0, i5 0.5
    expect(row(rows, 'accuracy', 'overall', 'wrong')).toMatchObject({ value: 2.5 / 5, n: 5 });
    expect(row(rows, 'accuracy', 'category:H', 'wrong')).toMatchObject({ value: 2 / 4, n: 4 });
    expect(row(rows, 'accuracy', 'subset:h2', 'wrong')).toMatchObject({ value: 0.25, n: 2 });
    expect(row(rows, 'accuracy', 'macro', 'wrong').value).toBeCloseTo(0.5, 12);
  });

  it('names the headline policy', () => {
    expect(row(rows, 'headline_accuracy', 'overall', 'excluded').value).toBe(0.75);
    expect(row(rows, 'headline_accuracy', 'macro', 'excluded').value).toBeCloseTo((2.5 / 3 + 0.5) / 2, 12);
    expect(rows.filter((r) => r.metric === 'headline_accuracy').every((r) => r.policy === 'excluded')).toBe(true);
  });

  it('position consistency over items whose views are all parseable; first-position, unparseable and failure rates', () => {
    // i1 consistent, i2 and i5 not; i3, i4 have an unparseable view
    expect(row(rows, 'position_consistency', 'overall')).toMatchObject({ value: 1 / 3, n: 3 });
    expect(row(rows, 'position_consistency', 'category:H')).toMatchObject({ value: 1 / 2, n: 2 });
    // parseable samples: i1 6 (3 at position 0), i2 6 (6), i3 2 (1), i5 6 (1)
    expect(row(rows, 'first_position_rate', 'overall')).toMatchObject({ value: 11 / 20, n: 20 });
    expect(row(rows, 'unparseable_rate', 'overall')).toMatchObject({ value: 7 / 30, n: 30 });
    expect(row(rows, 'failed_rate', 'overall')).toMatchObject({ value: 3 / 30, n: 30 });
    expect(row(rows, 'unparseable_view_rate', 'overall')).toMatchObject({ value: 3 / 10, n: 10 });
    // tokens: 100 + 10·sample + view over the 27 answered samples
    const answered = fixture.filter((j) => !j.failed);
    expect(row(rows, 'mean_output_tokens', 'overall').value).toBeCloseTo(answered.reduce((s, j) => s + 100 + 10 * j.sample + j.view, 0) / 27, 12);
    expect(row(rows, 'mean_latency_ms', 'overall')).toMatchObject({ n: 27 });
    expect(row(rows, 'items_judged', 'overall').value).toBe(5);
    expect(row(rows, 'items_without_judgments', 'overall').value).toBe(0);
  });

  it('bootstrap CIs contain the point estimate, are reproducible for a seed and move with it', () => {
    for (const policy of ['excluded', 'wrong']) {
      for (const scope of ['overall', 'macro', 'category:H', 'category:R']) {
        const r = row(rows, 'accuracy', scope, policy);
        expect(r.ciLow, `${scope} ${policy}`).toBeLessThanOrEqual(r.value);
        expect(r.ciHigh, `${scope} ${policy}`).toBeGreaterThanOrEqual(r.value);
      }
    }
    const again = computeMetrics(fixture, items, { seed: 7, bootstrap: 500 });
    expect(again).toEqual(rows);
    const other = computeMetrics(fixture, items, { seed: 8, bootstrap: 500 });
    expect(row(other, 'accuracy', 'overall', 'excluded').value).toBe(0.75);
    const ci = (rs: MetricRow[]) => rs.filter((r) => r.ciLow !== undefined).map((r) => [r.ciLow, r.ciHigh]);
    expect(ci(other)).not.toEqual(ci(rows));
    // Subset rows carry no interval; bootstrap 0 drops them all.
    expect(row(rows, 'accuracy', 'subset:h1', 'excluded').ciLow).toBeUndefined();
    expect(computeMetrics(fixture, items, { seed: 7, bootstrap: 0 }).some((r) => r.ciLow !== undefined)).toBe(false);
  });

  it('leaves out items that have no judgments, and rejects judgments that cannot be scored', () => {
    const more = [...items, { itemKey: 'i6', best: 1, category: 'R', subset: 'r1' }];
    const r = computeMetrics(fixture, more, { seed: 1, bootstrap: 0 });
    expect(row(r, 'accuracy', 'overall', 'wrong')).toMatchObject({ value: 0.5, n: 5 });
    expect(row(r, 'items_without_judgments', 'overall').value).toBe(1);
    expect(() => computeMetrics([{ ...fixture[0]!, itemKey: 'nope' }], items, { seed: 1 })).toThrow(MetricsInputError);
    expect(() => computeMetrics([fixture[0]!, fixture[0]!], items, { seed: 1 })).toThrow(/duplicate judgment/);
    expect(() => computeMetrics([{ ...fixture[0]!, chosenPosition: 2 }], items, { seed: 1 })).toThrow(/out of range/);
  });
});

describe('majority', () => {
  it('takes the most voted candidate; a tie goes to the lowest-numbered sample among the tied', () => {
    expect(majority([])).toBeNull();
    expect(
      majority([
        [0, 1],
        [1, 0],
        [2, 0],
      ]),
    ).toBe(0);
    expect(
      majority([
        [0, 1],
        [1, 0],
      ]),
    ).toBe(1);
    expect(
      majority([
        [3, 0],
        [1, 2],
        [2, 0],
        [0, 2],
      ]),
    ).toBe(2);
  });
});

/**
 * An independent implementation of the README definitions, written plainly: no shared helpers.
 * Compared with computeMetrics on a larger random fixture (K = 3, three cyclic views, 3 samples).
 */
function reference(js: JudgmentRecord[], its: Array<{ itemKey: string; best: number; category: string; subset: string }>) {
  const bestOf: Record<string, number> = {};
  const catOf: Record<string, string> = {};
  const subOf: Record<string, string> = {};
  for (const it of its) {
    bestOf[it.itemKey] = it.best;
    catOf[it.itemKey] = it.category;
    subOf[it.itemKey] = it.subset;
  }
  // item → view → list of [sample, candidate] for parseable samples (and the view exists even with none)
  const byItem: Record<string, Record<number, Array<[number, number]>>> = {};
  let parseable = 0;
  let atFirst = 0;
  let unparseable = 0;
  for (const j of js) {
    byItem[j.itemKey] ??= {};
    byItem[j.itemKey]![j.view] ??= [];
    if (j.failed || j.chosenPosition === null) {
      if (!j.failed) unparseable++;
      continue;
    }
    parseable++;
    if (j.chosenPosition === 0) atFirst++;
    byItem[j.itemKey]![j.view]!.push([j.sample, j.permutation[j.chosenPosition]!]);
  }
  const score: Record<'excluded' | 'wrong', Record<string, number>> = { excluded: {}, wrong: {} };
  let consistent = 0;
  let consistencyN = 0;
  for (const key of Object.keys(byItem)) {
    const views = Object.keys(byItem[key]!).map(Number);
    const maj: Array<number | null> = [];
    for (const v of views) {
      const votes = byItem[key]![v]!;
      if (votes.length === 0) {
        maj.push(null);
        continue;
      }
      const tally = new Map<number, number>();
      for (const [, c] of votes) tally.set(c, (tally.get(c) ?? 0) + 1);
      const most = Math.max(...tally.values());
      const tiedFirst = votes.filter(([, c]) => tally.get(c) === most).sort((a, b) => a[0] - b[0])[0]!;
      maj.push(tiedFirst[1]);
    }
    const ok = maj.filter((m) => m !== null);
    const right = ok.filter((m) => m === bestOf[key]).length;
    if (ok.length > 0) score.excluded[key] = right / ok.length;
    score.wrong[key] = right / maj.length;
    if (maj.length > 1 && ok.length === maj.length) {
      consistencyN++;
      if (new Set(maj).size === 1) consistent++;
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const out: Record<string, number> = {};
  for (const policy of ['excluded', 'wrong'] as const) {
    const keys = Object.keys(score[policy]);
    out[`overall/${policy}`] = mean(keys.map((k) => score[policy][k]!));
    const cats = [...new Set(keys.map((k) => catOf[k]!))];
    const catAcc = cats.map((c) => mean(keys.filter((k) => catOf[k] === c).map((k) => score[policy][k]!)));
    cats.forEach((c, i) => (out[`category:${c}/${policy}`] = catAcc[i]!));
    out[`macro/${policy}`] = mean(catAcc);
    for (const s of new Set(keys.map((k) => subOf[k]!))) out[`subset:${s}/${policy}`] = mean(keys.filter((k) => subOf[k] === s).map((k) => score[policy][k]!));
  }
  out['position_consistency'] = consistent / consistencyN;
  out['first_position_rate'] = atFirst / parseable;
  out['unparseable_rate'] = unparseable / js.length;
  return out;
}

describe('computeMetrics agrees with an independent computation', () => {
  // Deterministic pseudo-random fixture (a plain LCG, independent of the code under test).
  let state = 12345;
  const rand = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const cats = ['general', 'general', 'hallucination', 'hallucination', 'hallucination', 'hallucination', 'reasoning'];
  const bigItems = Array.from({ length: 400 }, (_, i) => {
    const category = cats[Math.floor(rand() * cats.length)]!;
    return { itemKey: `it${i}`, best: Math.floor(rand() * 3), category, subset: `${category}-${i % 2}` };
  });
  const views3 = [
    [0, 1, 2],
    [1, 2, 0],
    [2, 0, 1],
  ];
  const bigJudgments: JudgmentRecord[] = [];
  for (const it of bigItems) {
    const skill = rand();
    for (let view = 0; view < 3; view++) {
      for (let sample = 0; sample < 3; sample++) {
        const perm = views3[view]!;
        const u = rand();
        let chosenPosition: number | null;
        let failed = false;
        if (u < 0.05) {
          chosenPosition = null;
          failed = true;
        } else if (u < 0.15) chosenPosition = null;
        else if (rand() < skill) chosenPosition = perm.indexOf(it.best);
        else chosenPosition = rand() < 0.5 ? 0 : Math.floor(rand() * 3);
        bigJudgments.push({ itemKey: it.itemKey, category: it.category, subset: it.subset, view, sample, permutation: perm, chosenPosition, failed });
      }
    }
  }

  it('on every accuracy, the consistency and the rates', () => {
    const rows = computeMetrics(bigJudgments, bigItems, { seed: 'x', bootstrap: 200 });
    const ref = reference(bigJudgments, bigItems);
    for (const [key, value] of Object.entries(ref)) {
      const [scope, policy] = key.includes('/') ? key.split('/') : ['overall', ''];
      const metric = key.includes('/') ? 'accuracy' : key;
      expect(row(rows, metric, scope!, policy).value, key).toBeCloseTo(value, 12);
    }
    expect(rows.filter((r) => r.metric === 'accuracy')).toHaveLength(2 * (2 + 3 + 6));
  });

  it('gives overall CIs of the width a normal approximation predicts', () => {
    const rows = computeMetrics(bigJudgments, bigItems, { seed: 'x', bootstrap: 1000 });
    const ref = reference(bigJudgments, bigItems);
    const wrongScores = (() => {
      // per-item `wrong` scores, recomputed from the reference's definition for the standard error
      const s: number[] = [];
      for (const it of bigItems) {
        const one = reference(
          bigJudgments.filter((j) => j.itemKey === it.itemKey),
          [it],
        )['overall/wrong'];
        s.push(one!);
      }
      return s;
    })();
    const m = ref['overall/wrong']!;
    const sd = Math.sqrt(wrongScores.reduce((a, x) => a + (x - m) ** 2, 0) / (wrongScores.length - 1));
    const halfWidth = (1.96 * sd) / Math.sqrt(wrongScores.length);
    const r = row(rows, 'accuracy', 'overall', 'wrong');
    expect(r.ciHigh! - r.ciLow!).toBeGreaterThan(2 * halfWidth * 0.8);
    expect(r.ciHigh! - r.ciLow!).toBeLessThan(2 * halfWidth * 1.2);
    expect(Math.abs((r.ciHigh! + r.ciLow!) / 2 - m)).toBeLessThan(halfWidth * 0.25);
  });
});

describe('parseable and unparseable rates with CIs', () => {
  // 400 items × 2 views × 2 samples; an item's outputs are either all unparseable (30% of items) or all
  // parseable: the samples are clustered, so an honest interval is as wide as 400 draws, not 1,600.
  const items: ScoredItem[] = [];
  const judgments: JudgmentRecord[] = [];
  let unparseableItems = 0;
  for (let i = 0; i < 400; i++) {
    const itemKey = `c${i}`;
    items.push({ itemKey, best: 0, category: 'c', subset: 's' });
    const bad = (i * 7919) % 10 < 3;
    if (bad) unparseableItems++;
    for (let view = 0; view < 2; view++)
      for (let sample = 0; sample < 2; sample++)
        judgments.push({
          itemKey,
          category: 'c',
          subset: 's',
          view,
          sample,
          permutation: view ? [1, 0] : [0, 1],
          chosenPosition: bad ? null : view,
          failed: false,
        });
  }
  const rows = computeMetrics(judgments, items, { seed: 3, bootstrap: 1000 });

  it('resamples items, not samples: the interval has the width of 400 clustered draws', () => {
    const p = unparseableItems / 400;
    const u = row(rows, 'unparseable_rate', 'overall');
    expect(u).toMatchObject({ value: p, n: 1600 });
    const halfWidth = 1.96 * Math.sqrt((p * (1 - p)) / 400);
    expect(u.ciHigh! - u.ciLow!).toBeGreaterThan(2 * halfWidth * 0.8);
    expect(u.ciHigh! - u.ciLow!).toBeLessThan(2 * halfWidth * 1.2);
    const q = row(rows, 'parseable_rate', 'overall');
    expect(q.value).toBeCloseTo(1 - p, 12);
    expect(q.ciLow!).toBeCloseTo(1 - u.ciHigh!, 12);
    expect(q.ciHigh!).toBeCloseTo(1 - u.ciLow!, 12);
  });

  it('parseable + unparseable + failed = 1, and bootstrap 0 gives the rates without intervals', () => {
    const withFailures = judgments.map((j, i) => (i % 10 === 0 ? { ...j, failed: true, chosenPosition: null } : j));
    const r = computeMetrics(withFailures, items, { seed: 3, bootstrap: 0 });
    const sum = row(r, 'parseable_rate', 'overall').value + row(r, 'unparseable_rate', 'overall').value + row(r, 'failed_rate', 'overall').value;
    expect(sum).toBeCloseTo(1, 12);
    expect(row(r, 'parseable_rate', 'overall').ciLow).toBeUndefined();
  });
});

describe('computeMetrics, bit for bit', () => {
  it('gives a generated 300-item stage exactly the values and intervals it always did (sha256 of its rows)', () => {
    // Pinned from the bootstrap that drew one nextInt call at a time: a faster bootstrap must not move a bit.
    const r = createRng('pinned fixture');
    const cats = ['general', 'hallucination', 'reasoning'];
    const items = Array.from({ length: 300 }, (_, i) => ({ itemKey: `item-${i}`, best: r.nextInt(3), category: cats[r.nextInt(3)]!, subset: `s${i % 5}` }));
    const judgments: JudgmentRecord[] = items.flatMap((it) =>
      [0, 1, 2].flatMap((view) =>
        [0, 1].map((sample) => {
          const u = r.nextFloat();
          return {
            itemKey: it.itemKey,
            category: it.category,
            subset: it.subset,
            view,
            sample,
            permutation: [view, (view + 1) % 3, (view + 2) % 3],
            chosenPosition: u < 0.1 ? null : r.nextInt(3),
            failed: u < 0.03,
            formatted: u > 0.2,
          };
        }),
      ),
    );
    const rows = computeMetrics(judgments, items, { seed: 'pinned', bootstrap: 1000 });
    expect(createHash('sha256').update(JSON.stringify(rows)).digest('hex')).toBe('69a9b57b3cc8bc25d4cb75791daffebbb1b9923b4f7b901946b8ab0a9598e8b1');
  });
});
