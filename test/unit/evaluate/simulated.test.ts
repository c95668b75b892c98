import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadDataset, type McItem } from '../../../activities/datasets/mc.js';
import { computeMetrics, type JudgmentRecord, type MetricRow } from '../../../activities/evaluate/metrics.js';
import { parseChoice } from '../../../activities/evaluate/parse.js';
import { labelFor, renderJudgePrompt } from '../../../activities/evaluate/prompt.js';
import { applyView, viewsFor, type ViewMode } from '../../../activities/evaluate/views.js';

const REAL = fileURLToPath(new URL('../../../data/vl-rewardbench/data.jsonl', import.meta.url));

function value(rows: MetricRow[], metric: string, scope: string, policy = ''): number {
  const r = rows.find((x) => x.metric === metric && x.scope === scope && x.policy === policy);
  if (!r) throw new Error(`no row ${metric} ${scope} ${policy}`);
  return r.value;
}

/**
 * Runs a judge policy end to end without a model: views → prompt → a fake output → parser →
 * judgments. `pick` sees the rendered prompt and the candidate shown at each position.
 */
function simulate(items: McItem[], mode: ViewMode, samples: number, pick: (shown: string[], item: McItem, sample: number) => string): JudgmentRecord[] {
  const out: JudgmentRecord[] = [];
  for (const item of items) {
    viewsFor(mode, item.candidates.length, 2025, item.itemKey).forEach((perm, view) => {
      const shown = applyView(item.candidates, perm);
      const prompt = renderJudgePrompt({ query: item.query, candidates: shown, labels: 'letters' });
      expect(prompt.length).toBeGreaterThan(0);
      for (let sample = 0; sample < samples; sample++) {
        const output = pick(shown, item, sample);
        const { position } = parseChoice(output, shown.length, 'letters');
        out.push({
          itemKey: item.itemKey,
          category: item.category,
          subset: item.subset,
          view,
          sample,
          permutation: perm,
          chosenPosition: position,
          outputTokens: output.length,
        });
      }
    });
  }
  return out;
}

describe('simulated judges on the real VL-RewardBench items', async () => {
  const { items } = await loadDataset({ path: REAL });
  const alwaysFirst = () => `<think>The first one reads well.</think>\n<answer>${labelFor(0, 'letters')}</answer>`;

  it('an always-first judge scores 0.5 when both orders are judged, with first-position rate 1', () => {
    const rows = computeMetrics(simulate(items, 'swap', 1, alwaysFirst), items, { seed: 1, bootstrap: 200 });
    for (const policy of ['excluded', 'wrong']) {
      expect(value(rows, 'accuracy', 'overall', policy)).toBe(0.5);
      expect(value(rows, 'accuracy', 'macro', policy)).toBe(0.5);
      for (const c of ['general', 'hallucination', 'reasoning']) expect(value(rows, 'accuracy', `category:${c}`, policy)).toBe(0.5);
    }
    expect(value(rows, 'first_position_rate', 'overall')).toBe(1);
    expect(value(rows, 'position_consistency', 'overall')).toBe(0);
    expect(value(rows, 'unparseable_rate', 'overall')).toBe(0);
  });

  it('the same judge without swapping looks 99.6% accurate: the benchmark trap', () => {
    const rows = computeMetrics(simulate(items, 'none', 1, alwaysFirst), items, { seed: 1, bootstrap: 200 });
    expect(value(rows, 'accuracy', 'overall', 'excluded')).toBeCloseTo(1245 / 1250, 12);
    expect(value(rows, 'first_position_rate', 'overall')).toBe(1);
  });

  it('random order: the always-first judge falls to about 0.5', () => {
    const rows = computeMetrics(simulate(items, 'random', 1, alwaysFirst), items, { seed: 1, bootstrap: 200 });
    expect(value(rows, 'accuracy', 'overall', 'excluded')).toBeGreaterThan(0.45);
    expect(value(rows, 'accuracy', 'overall', 'excluded')).toBeLessThan(0.55);
  });

  it('an oracle that names the preferred candidate by its label scores 1 and is position-consistent', () => {
    const oracle = (shown: string[], item: McItem) => `Response ${labelFor(shown.indexOf(item.candidates[item.best]!), 'letters')} is better.`;
    const rows = computeMetrics(simulate(items, 'swap', 3, oracle), items, { seed: 1, bootstrap: 200 });
    expect(value(rows, 'accuracy', 'overall', 'excluded')).toBe(1);
    expect(value(rows, 'position_consistency', 'overall')).toBe(1);
    expect(value(rows, 'first_position_rate', 'overall')).toBe(0.5);
  });

  it('metrics for 1,250 items × 2 views × 3 samples with 1,000 resamples (timing printed)', () => {
    const judgments = simulate(items, 'swap', 3, (_shown, item, sample) =>
      sample === 2 && item.best === 0 ? 'I cannot decide' : `<answer>${'AB'[(item.itemKey.length + sample) % 2]}</answer>`,
    );
    expect(judgments).toHaveLength(7500);
    computeMetrics(judgments, items, { seed: 3, bootstrap: 1000 }); // warm-up
    const t0 = performance.now();
    const rows = computeMetrics(judgments, items, { seed: 3, bootstrap: 1000 });
    const ms = performance.now() - t0;
    console.log(`[evaluate] computeMetrics: 7,500 judgments, 1,000 bootstrap resamples, ${rows.length} rows in ${ms.toFixed(1)} ms`);
    const overall = rows.find((r) => r.metric === 'accuracy' && r.scope === 'overall' && r.policy === 'excluded')!;
    expect(overall.ciLow).toBeLessThanOrEqual(overall.value);
    expect(overall.ciHigh).toBeGreaterThanOrEqual(overall.value);
  });
});
