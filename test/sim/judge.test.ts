/**
 * The simulated judge and reasoner over real HTTP with the real openai client: accuracy and
 * position bias as configured, on the real VL-RewardBench records presented in both orders.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import { client, judgePrompt, LAYOUTS, loadVlrb, parseChoice, pool, VLRB_PATH, type VlrbRecord } from './helpers.js';

const records: VlrbRecord[] = loadVlrb();
const layouts = Object.keys(LAYOUTS);

interface Judgment {
  choice: number | undefined;
  best: number;
  content: string;
}

/** Every record twice (original order and swapped): 2,500 judgments. */
async function judgeAll(sim: SimHandle, model: string, opts: { seed?: number } = {}): Promise<Judgment[]> {
  const api = client(sim.url);
  const jobs = records.flatMap((r) => [false, true].map((swap) => ({ r, swap })));
  return pool(jobs, 32, async ({ r, swap }, i) => {
    const best = r.human_ranking.indexOf(0);
    const options = swap ? [r.response[1], r.response[0]] : [r.response[0], r.response[1]];
    const res = await api.chat.completions.create({
      model,
      seed: opts.seed ?? i,
      messages: [{ role: 'user', content: judgePrompt(r.query, options, layouts[i % layouts.length]) }],
    });
    const content = res.choices[0]!.message.content ?? '';
    return { choice: parseChoice(content), best: swap ? 1 - best : best, content };
  });
}

const rate = (js: Judgment[], f: (j: Judgment) => boolean) => js.filter(f).length / js.length;

let sim: SimHandle;

beforeAll(async () => {
  const t0 = performance.now();
  sim = await startSimulator({
    seed: 11,
    truth: VLRB_PATH,
    models: {
      judge: { behaviour: 'judge', accuracy: 0.8 },
      'judge-first': { behaviour: 'judge', first_bias: 1 },
      'judge-half-first': { behaviour: 'judge', first_bias: 0.5, accuracy: 1 },
      'judge-numbers': { behaviour: 'judge', accuracy: 0.7, labels: 'numbers', answer_format: 'boxed', think: false },
      'judge-sloppy': { behaviour: 'judge', accuracy: 1, unparseable_rate: 0.2 },
      reasoner: { behaviour: 'reasoner', accuracy: 0.9 },
    },
  });
  // The truth index of 1,250 items loads in well under a second (cached after the first load).
  expect(performance.now() - t0).toBeLessThan(1000);
});

afterAll(async () => {
  await sim.close();
});

describe('judge on VL-RewardBench, both orders', () => {
  it('is right ≈ accuracy of the time and finds every item in the truth file', async () => {
    sim.reset();
    const js = await judgeAll(sim, 'judge');
    expect(js).toHaveLength(2500);
    expect(rate(js, (j) => j.choice === undefined)).toBe(0);
    expect(rate(js, (j) => j.choice === j.best)).toBeGreaterThan(0.77);
    expect(rate(js, (j) => j.choice === j.best)).toBeLessThan(0.83);
    // An unbiased judge answers position 1 about half the time, whatever the data's skew.
    expect(rate(js, (j) => j.choice === 0)).toBeGreaterThan(0.46);
    expect(rate(js, (j) => j.choice === 0)).toBeLessThan(0.54);
    const s = sim.stats();
    expect(s.truthHits).toBe(2500);
    expect(s.truthMisses).toBe(0);
    expect(s.requests).toBe(2500);
    expect(s.byStatus['200']).toBe(2500);
    expect(js[0]!.content).toMatch(/^<think>\n[\s\S]+\n<\/think>\n<answer>[AB]<\/answer>$/);
  });

  it('first_bias 1 always answers position 1: 50% on the swapped protocol', async () => {
    const js = await judgeAll(sim, 'judge-first');
    expect(rate(js, (j) => j.choice === 0)).toBe(1);
    expect(rate(js, (j) => j.choice === j.best)).toBe(0.5);
  });

  it('first_bias 0.5 with accuracy 1 is right 75% of the time', async () => {
    const js = await judgeAll(sim, 'judge-half-first');
    expect(rate(js, (j) => j.choice === j.best)).toBeGreaterThan(0.72);
    expect(rate(js, (j) => j.choice === j.best)).toBeLessThan(0.78);
  });

  it('number labels and \\boxed{} answers, no reasoning', async () => {
    const js = await judgeAll(sim, 'judge-numbers');
    expect(js.every((j) => /^\\boxed\{[12]\}$/.test(j.content))).toBe(true);
    expect(rate(js, (j) => j.choice === j.best)).toBeGreaterThan(0.67);
    expect(rate(js, (j) => j.choice === j.best)).toBeLessThan(0.73);
  });

  it('unparseable_rate leaves ≈ that share of outputs without an answer', async () => {
    const js = await judgeAll(sim, 'judge-sloppy');
    const unparseable = rate(js, (j) => j.choice === undefined);
    expect(unparseable).toBeGreaterThan(0.17);
    expect(unparseable).toBeLessThan(0.23);
    expect(js.filter((j) => j.choice !== undefined).every((j) => j.choice === j.best)).toBe(true);
  });
});

describe('judge with other truth sources', () => {
  it('K = 4 generic items {candidates, best}, shuffled positions, shared prefixes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jf-sim-truth-'));
    const path = join(dir, 'mc.jsonl');
    const prefix = 'The chart shows that the value in the year 2019 was';
    const items = Array.from({ length: 200 }, (_, i) => ({
      id: `mc-${i}`,
      candidates: [0, 1, 2, 3].map((k) => `${prefix} ${i * 10 + k} units, according to item ${i} option ${k}.`),
      best: i % 4,
    }));
    writeFileSync(path, items.map((x) => JSON.stringify(x)).join('\n') + '\n');
    const mc = await startSimulator({
      truth: path,
      models: { right: { behaviour: 'judge', accuracy: 1 }, wrong: { behaviour: 'judge', accuracy: 0 } },
    });
    try {
      const api = client(mc.url);
      const run = (model: string) =>
        pool(items, 16, async (it, i) => {
          const order = [0, 1, 2, 3].sort((a, b) => ((a * 7 + i) % 4) - ((b * 7 + i) % 4));
          const res = await api.chat.completions.create({
            model,
            messages: [
              {
                role: 'user',
                content: judgePrompt(
                  'What was the value in 2019?',
                  order.map((k) => it.candidates[k]!),
                  'letterDot',
                ),
              },
            ],
          });
          return { choice: parseChoice(res.choices[0]!.message.content ?? ''), bestPos: order.indexOf(it.best) };
        });
      const right = await run('right');
      expect(right.every((r) => r.choice === r.bestPos)).toBe(true);
      const wrong = await run('wrong');
      expect(wrong.every((r) => r.choice !== r.bestPos && r.choice! >= 0 && r.choice! < 4)).toBe(true);
      // Wrong answers spread over the three other positions.
      const offsets = new Set(wrong.map((r) => (r.choice! - r.bestPos + 4) % 4));
      expect([...offsets].sort()).toEqual([1, 2, 3]);
      expect(mc.stats().truthHits).toBe(400);
    } finally {
      await mc.close();
    }
  });

  it('without a truth match: a random labelled option, counted as a truth miss', async () => {
    sim.reset();
    const api = client(sim.url);
    const choices = await pool(
      Array.from({ length: 60 }, (_, i) => i),
      8,
      async (i) => {
        const res = await api.chat.completions.create({
          model: 'judge',
          seed: i,
          messages: [{ role: 'user', content: judgePrompt('Which is best?', ['Alpha option text.', 'Beta option text.', 'Gamma option text.']) }],
        });
        return parseChoice(res.choices[0]!.message.content ?? '');
      },
    );
    expect(new Set(choices)).toEqual(new Set([0, 1, 2]));
    expect(sim.stats().truthMisses).toBe(60);
    expect(sim.stats().truthHits).toBe(0);
  });

  it('ranks policy answers by their (q=…) markers when no truth item matches', async () => {
    sim.reset();
    const res = await client(sim.url).chat.completions.create({
      model: 'judge-half-first',
      seed: 3,
      n: 40,
      messages: [
        {
          role: 'user',
          content: judgePrompt('What is in the image?', [
            'Answer (q=0.31): A dog.',
            'Answer (q=0.82): A brown dog on a bench.',
            'Answer (q=0.55): A dog outside.',
          ]),
        },
      ],
    });
    const picks = res.choices.map((c) => parseChoice(c.message.content ?? ''));
    expect(picks.every((p) => p === 0 || p === 1)).toBe(true); // first_bias 0.5, accuracy 1 → position 1 or the best (2nd)
    expect(picks).toContain(1);
    expect(sim.stats().qualityMatches).toBe(1);
  });
});

describe('reasoner', () => {
  it('reasons over a caption, then chooses among the labelled options with ≈ accuracy', async () => {
    const api = client(sim.url);
    const subset = records.slice(0, 400);
    const out = await pool(subset, 16, async (r, i) => {
      const swap = i % 2 === 1;
      const options = swap ? [r.response[1], r.response[0]] : [r.response[0], r.response[1]];
      const best = swap ? 1 - r.human_ranking.indexOf(0) : r.human_ranking.indexOf(0);
      const content = [
        'Image description: a detailed caption of the image.',
        `Question: ${r.query}`,
        'Options:',
        LAYOUTS.letterDot!(options),
        'Hint: think about what the image shows.',
      ].join('\n');
      const res = await api.chat.completions.create({ model: 'reasoner', seed: i, messages: [{ role: 'user', content }] });
      const text = res.choices[0]!.message.content ?? '';
      return { text, right: parseChoice(text) === best };
    });
    const acc = out.filter((o) => o.right).length / out.length;
    expect(acc).toBeGreaterThan(0.85);
    expect(acc).toBeLessThan(0.95);
    expect(out[0]!.text).toMatch(/^<think>\n[\s\S]*description[\s\S]*hint[\s\S]*<\/think>\n<answer>[AB]<\/answer>$/);
  });
});
