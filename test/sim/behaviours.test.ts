/** The non-judge behaviours over real HTTP: policy, negatives writer, captioner, grader. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import { client, pool } from './helpers.js';

let sim: SimHandle;

beforeAll(async () => {
  sim = await startSimulator({
    models: {
      policy: { behaviour: 'policy', quality: 0.7, quality_spread: 0.1, output_tokens: 50 },
      negatives: { behaviour: 'negatives', identical_rate: 0.1, empty_rate: 0.1 },
      refuser: { behaviour: 'negatives', refusal_rate: 0.3 },
      captioner: { behaviour: 'captioner', output_tokens: 100 },
      grader: { behaviour: 'grader', noise: 0 },
    },
  });
});

afterAll(async () => {
  await sim.close();
});

const ask = async (model: string, content: string, seed?: number, n?: number) =>
  (await client(sim.url).chat.completions.create({ model, seed, n, messages: [{ role: 'user', content }] })).choices.map((c) => c.message.content!);

describe('policy', () => {
  it('embeds a quality score drawn around `quality`, and output_tokens sets the length', async () => {
    const answers = await ask('policy', 'What colour is the car in the picture?', 1, 100);
    const qs = answers.map((a) => Number(/^Answer \(q=(\d\.\d\d)\): /.exec(a)![1]));
    const mean = qs.reduce((s, q) => s + q, 0) / qs.length;
    expect(mean).toBeGreaterThan(0.66);
    expect(mean).toBeLessThan(0.74);
    expect(Math.min(...qs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...qs)).toBeLessThanOrEqual(1);
    for (const a of answers) expect(Math.ceil(a.length / 4)).toBeGreaterThanOrEqual(50);
    for (const a of answers) expect(Math.ceil(a.length / 4)).toBeLessThan(90);
  });
});

describe('grader', () => {
  it('reads the (q=…) of the graded answer (the last one in the prompt)', async () => {
    const prompt = 'Example: Answer (q=0.20): a cat. Score: 0.2\n\nNow grade this answer:\nAnswer (q=0.83): a brown dog sitting on a bench.';
    expect(await ask('grader', prompt)).toEqual(['0.8']);
    const plain = await ask('grader', 'Grade: an answer without a marker', 1);
    expect(plain[0]).toMatch(/^(0|1)\.\d$/);
  });
});

describe('negatives', () => {
  const reference = 'There are two red cars to the left of the building. The sign reads 45 km/h. It is a sunny day.';
  const prompt = `Write a plausible but flawed answer.\n\nQuestion: Describe the street.\n\nReference answer: ${reference}\n\nReturn only the flawed answer.`;

  it('alters the reference; sometimes returns it unchanged or empty, at the configured rates', async () => {
    const outs = (
      await pool(
        Array.from({ length: 10 }, (_, i) => i),
        10,
        (seed) => ask('negatives', prompt, seed, 50),
      )
    ).flat();
    const identical = outs.filter((o) => o === reference).length / outs.length;
    const empty = outs.filter((o) => o === '').length / outs.length;
    expect(identical).toBeGreaterThan(0.06);
    expect(identical).toBeLessThan(0.14);
    expect(empty).toBeGreaterThan(0.06);
    expect(empty).toBeLessThan(0.14);
    const altered = outs.filter((o) => o !== '' && o !== reference);
    expect(altered.length).toBeGreaterThan(350);
    // Plausible: most of the reference survives (one sentence at most is dropped); the negatives vary.
    const kept = (o: string) => o.split(' ').filter((w) => reference.split(' ').includes(w)).length;
    for (const o of altered) expect(kept(o)).toBeGreaterThanOrEqual(6);
    expect(altered.reduce((sum, o) => sum + kept(o), 0) / altered.length / reference.split(' ').length).toBeGreaterThan(0.75);
    expect(new Set(altered).size).toBeGreaterThan(50);
    expect(outs).not.toContain('Return only the flawed answer.');
  });

  it('declines at refusal_rate', async () => {
    const outs = (
      await pool(
        Array.from({ length: 5 }, (_, i) => i),
        5,
        (seed) => ask('refuser', prompt, seed, 40),
      )
    ).flat();
    const refused = outs.filter((o) => /sorry|cannot|won't/i.test(o) && !o.includes('sunny')).length / outs.length;
    expect(refused).toBeGreaterThan(0.22);
    expect(refused).toBeLessThan(0.38);
  });

  it('reads the reference from <reference> tags too', async () => {
    const outs = await ask('negatives', `Rewrite with one mistake.\n<reference>The total is 12 apples.</reference>`, 7, 20);
    const altered = outs.filter((o) => o !== '' && o !== 'The total is 12 apples.');
    expect(altered.length).toBeGreaterThan(10);
    for (const o of altered) expect(o).toMatch(/^The total is \d+ apples\.|^The total is 12 apples\. \w/);
  });
});

describe('captioner', () => {
  it('describes deterministically, about output_tokens long', async () => {
    const [a] = await ask('captioner', 'Describe the image in detail.', 1);
    const [b] = await ask('captioner', 'Describe the image in detail.', 1);
    expect(a).toBe(b);
    expect(a).toMatch(/^A detailed description of the image: The image shows an? /);
    expect(Math.ceil(a!.length / 4)).toBeGreaterThanOrEqual(100);
    expect(Math.ceil(a!.length / 4)).toBeLessThan(140);
  });
});
