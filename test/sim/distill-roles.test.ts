/** The simulator's distill roles over real HTTP: hint-following, leaks, reasoning_content, the rewriter. */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hintedLabel } from '../../sim/behaviours.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';

let sim: SimHandle;
let api: OpenAI;
beforeAll(async () => {
  sim = await startSimulator({
    seed: 2,
    models: {
      follower: { behaviour: 'reasoner', accuracy: 0, hint_following: 1, leak_rate: 0 },
      field: { behaviour: 'reasoner', reasoning_field: true, output_tokens: 60 },
      rewriter: { behaviour: 'rewriter' },
      changer: { behaviour: 'rewriter', change_rate: 1 },
    },
  });
  api = new OpenAI({ baseURL: sim.url, apiKey: 'x', maxRetries: 0 });
});
afterAll(async () => {
  await sim?.close();
});

const prompt = (hint: string) =>
  `[Description]\nA scene.\n\n[Question]\nWhat?\n\n[Response A]\nfirst option text\n\n[Response B]\nsecond option text\n\n[Response C]\nthird option text\n\n${hint}\n\nWhich is best: A, B or C?`;

describe('distill roles', () => {
  it('reads the label a hint names', () => {
    expect(hintedLabel('Hint: a careful expert leaned towards C.')).toBe('C');
    expect(hintedLabel('Hint: think about what the image shows.')).toBeUndefined();
    expect(hintedLabel('Answer A.\nNo clue here.')).toBeUndefined();
  });

  it('a reasoner with hint_following 1 answers the hinted label and, with leak_rate 0, never mentions the hint', async () => {
    for (let seed = 0; seed < 20; seed++) {
      const res = await api.chat.completions.create({
        model: 'follower',
        seed,
        messages: [{ role: 'user', content: prompt('Hint: a careful expert leaned towards C.') }],
      });
      const text = res.choices[0]!.message.content!;
      expect(text).toMatch(/<answer>C<\/answer>$/);
      expect(text).not.toMatch(/\bhint\b/i);
    }
  });

  it('reasoning_field sends the thinking as reasoning_content and only the answer as content', async () => {
    const res = await api.chat.completions.create({ model: 'field', seed: 1, messages: [{ role: 'user', content: prompt('') }] });
    const m = res.choices[0]!.message as unknown as { content: string; reasoning_content: string };
    expect(m.content).toMatch(/^<answer>[ABC]<\/answer>$/);
    expect(m.reasoning_content.length).toBeGreaterThan(100);
    expect(m.reasoning_content).not.toMatch(/<\/?think>/);
  });

  it('the rewriter drops hint sentences, rewrites "the description", and with change_rate 1 changes the answer', async () => {
    const trace =
      'According to the description, the image shows a red circle. The hint points toward one option, but I should check it. The description says the shape is round.\n\n<answer>B</answer>';
    const ask = async (model: string, instruction: string) =>
      (await api.chat.completions.create({ model, messages: [{ role: 'user', content: `${instruction}\n\n<trace>\n${trace}\n</trace>` }] })).choices[0]!.message
        .content!;
    const dehinted = await ask('rewriter', 'Remove any mention of a hint.');
    expect(dehinted).not.toMatch(/hint/i);
    expect(dehinted).toContain('According to the description');
    expect(dehinted).toMatch(/<answer>B<\/answer>$/);
    const imaged = await ask('rewriter', 'Replace references to the description with the image.');
    expect(imaged).toContain('Looking at the image, the image shows a red circle.');
    expect(imaged).toContain('The image shows the shape is round.');
    expect(imaged).toContain('The hint points');
    expect(await ask('changer', 'Remove any mention of a hint.')).toMatch(/<answer>A<\/answer>$/);
  });
});
