/**
 * The simulator's HTTP contract through the real openai client (maxRetries 0) and raw fetch:
 * shapes, errors, determinism, request parameters, stats.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import { client, judgePrompt, loadVlrb, pool, VLRB_PATH } from './helpers.js';

let sim: SimHandle;
let api: OpenAI;
const record = loadVlrb()[1]!;
const judgeMessages = [{ role: 'user' as const, content: judgePrompt(record.query, record.response) }];

beforeAll(async () => {
  sim = await startSimulator({
    seed: 5,
    max_context_tokens: 2000,
    truth: VLRB_PATH,
    models: {
      judge: { behaviour: 'judge' },
      policy: { behaviour: 'policy', quality: 0.7 },
      captioner: { behaviour: 'captioner' },
      small: { behaviour: 'policy', max_context_tokens: 10 },
      slow: { behaviour: 'policy', latency: { kind: 'fixed', ms: 400 } },
    },
  });
  api = client(sim.url);
});

afterAll(async () => {
  await sim.close();
});

async function apiError(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (err) {
    if (err instanceof OpenAI.APIError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

describe('shape', () => {
  it('answers in the chat-completions shape with usage estimates', async () => {
    const res = await api.chat.completions.create({ model: 'judge', messages: judgeMessages });
    expect(res.object).toBe('chat.completion');
    expect(res.id).toMatch(/^chatcmpl-/);
    expect(res.model).toBe('judge');
    expect(typeof res.created).toBe('number');
    expect(res.choices).toHaveLength(1);
    expect(res.choices[0]!.index).toBe(0);
    expect(res.choices[0]!.message.role).toBe('assistant');
    expect(res.choices[0]!.finish_reason).toBe('stop');
    const content = res.choices[0]!.message.content!;
    expect(res.usage!.prompt_tokens).toBe(Math.ceil(judgeMessages[0]!.content.length / 4));
    expect(res.usage!.completion_tokens).toBe(Math.ceil(content.length / 4));
    expect(res.usage!.total_tokens).toBe(res.usage!.prompt_tokens + res.usage!.completion_tokens);
    // output_tokens (default 200 for a judge) sets the approximate length.
    expect(res.usage!.completion_tokens).toBeGreaterThan(150);
    expect(res.usage!.completion_tokens).toBeLessThan(260);
  });

  it('lists the served models', async () => {
    const ids: string[] = [];
    for await (const m of api.models.list()) {
      expect(m.object).toBe('model');
      expect(m.owned_by).toBe('judgeflow-sim');
      ids.push(m.id);
    }
    expect(ids).toEqual(['judge', 'policy', 'captioner', 'small', 'slow']);
    expect((await api.models.retrieve('policy')).id).toBe('policy');
  });

  it('honours n: n independent choices', async () => {
    const res = await api.chat.completions.create({ model: 'judge', messages: judgeMessages, n: 5, seed: 1 });
    expect(res.choices.map((c) => c.index)).toEqual([0, 1, 2, 3, 4]);
    expect(new Set(res.choices.map((c) => c.message.content)).size).toBe(5);
    // Choice i does not depend on n.
    const one = await api.chat.completions.create({ model: 'judge', messages: judgeMessages, n: 1, seed: 1 });
    expect(one.choices[0]!.message.content).toBe(res.choices[0]!.message.content);
    expect(res.usage!.completion_tokens).toBe(res.choices.reduce((s, c) => s + Math.ceil(c.message.content!.length / 4), 0));
  });

  it('max_tokens truncates with finish_reason length; stop cuts before the stop sequence', async () => {
    const full = await api.chat.completions.create({ model: 'judge', messages: judgeMessages, seed: 2 });
    const cut = await api.chat.completions.create({ model: 'judge', messages: judgeMessages, seed: 2, max_tokens: 10 });
    expect(cut.choices[0]!.finish_reason).toBe('length');
    expect(cut.choices[0]!.message.content).toBe(full.choices[0]!.message.content!.slice(0, 40));
    expect(cut.usage!.completion_tokens).toBe(10);
    const newer = await api.chat.completions.create({ model: 'judge', messages: judgeMessages, seed: 2, max_completion_tokens: 10 });
    expect(newer.choices[0]!.message.content).toBe(cut.choices[0]!.message.content);
    const stopped = await api.chat.completions.create({ model: 'judge', messages: judgeMessages, seed: 2, stop: ['</think>'] });
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
    expect(stopped.choices[0]!.message.content).toBe(full.choices[0]!.message.content!.split('</think>')[0]);
  });

  it('accepts image parts and counts their bytes', async () => {
    sim.reset();
    const png = Buffer.alloc(3000, 7);
    const messages = [
      {
        role: 'user' as const,
        content: [
          { type: 'text' as const, text: 'Describe the image in detail.' },
          { type: 'image_url' as const, image_url: { url: `data:image/png;base64,${png.toString('base64')}` } },
        ],
      },
    ];
    const a = await api.chat.completions.create({ model: 'captioner', messages });
    expect(a.choices[0]!.message.content).toMatch(/^A detailed description of the image: /);
    expect(sim.stats().images).toBe(1);
    expect(sim.stats().imageBytes).toBe(3000);
    // A different image gets a different description; the same image the same one.
    const other = [
      {
        ...messages[0]!,
        content: [
          messages[0]!.content[0]!,
          { type: 'image_url' as const, image_url: { url: `data:image/png;base64,${Buffer.alloc(3000, 8).toString('base64')}` } },
        ],
      },
    ];
    const b = await api.chat.completions.create({ model: 'captioner', messages: other });
    expect(b.choices[0]!.message.content).not.toBe(a.choices[0]!.message.content);
    const again = await api.chat.completions.create({ model: 'captioner', messages });
    expect(again.choices[0]!.message.content).toBe(a.choices[0]!.message.content);
  });
});

describe('determinism', () => {
  it('the same request gets the same content, even from a fresh server', async () => {
    const a = await api.chat.completions.create({ model: 'judge', messages: judgeMessages, seed: 9, n: 3 });
    const b = await api.chat.completions.create({ model: 'judge', messages: judgeMessages, seed: 9, n: 3 });
    expect(b.choices).toEqual(a.choices);
    const again = await startSimulator({ seed: 5, truth: VLRB_PATH, models: { judge: { behaviour: 'judge' } } });
    try {
      const c = await client(again.url).chat.completions.create({ n: 3, seed: 9, messages: judgeMessages, model: 'judge' });
      expect(c.choices).toEqual(a.choices);
    } finally {
      await again.close();
    }
  });

  it('a different seed, message or config seed can change the answer', async () => {
    const contents = await pool(
      [1, 2, 3, 4, 5, 6, 7, 8],
      8,
      async (seed) => (await api.chat.completions.create({ model: 'judge', messages: judgeMessages, seed })).choices[0]!.message.content,
    );
    expect(new Set(contents).size).toBe(8);
    const answers = new Set(contents.map((c) => /<answer>(\w)<\/answer>/.exec(c!)?.[1]));
    expect(answers.size).toBe(2); // samples that differ only in seed disagree
    const other = await startSimulator({ seed: 6, truth: VLRB_PATH, models: { judge: { behaviour: 'judge' } } });
    try {
      const c = await client(other.url).chat.completions.create({ model: 'judge', messages: judgeMessages, seed: 1 });
      expect(c.choices[0]!.message.content).not.toBe(contents[0]);
    } finally {
      await other.close();
    }
  });

  it('temperature 0 is greedy: the seed no longer matters', async () => {
    const a = await api.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'What is shown?' }], temperature: 0, seed: 1 });
    const b = await api.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'What is shown?' }], temperature: 0, seed: 2 });
    expect(b.choices[0]!.message.content).toBe(a.choices[0]!.message.content);
    const c = await api.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'What is shown?' }], temperature: 0.7, seed: 2 });
    expect(c.choices[0]!.message.content).not.toBe(a.choices[0]!.message.content);
    const many = await api.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'What is shown?' }], temperature: 0, n: 3 });
    expect(many.choices.map((x) => x.message.content)).toEqual(Array(3).fill(a.choices[0]!.message.content));
  });
});

describe('errors', () => {
  it('unknown model → 404 model_not_found', async () => {
    const err = await apiError(api.chat.completions.create({ model: 'nope', messages: judgeMessages }));
    expect(err.status).toBe(404);
    expect(err.code).toBe('model_not_found');
    expect(err.type).toBe('invalid_request_error');
  });

  it('SIM_BAD_REQUEST → 400; stream → 400; a prompt over max_context_tokens → 400 context_length_exceeded', async () => {
    const bad = await apiError(api.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'please SIM_BAD_REQUEST' }] }));
    expect(bad.status).toBe(400);
    expect(bad.code).toBe('sim_bad_request');
    const stream = await apiError(api.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'hi' }], stream: true }));
    expect(stream.status).toBe(400);
    const long = await apiError(api.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'x'.repeat(8004) }] }));
    expect(long.status).toBe(400);
    expect(long.code).toBe('context_length_exceeded');
    // 8,000 chars = 2,000 tokens: exactly at the limit is fine.
    await api.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'x'.repeat(8000) }] });
    const small = await apiError(api.chat.completions.create({ model: 'small', messages: [{ role: 'user', content: 'x'.repeat(44) }] }));
    expect(small.code).toBe('context_length_exceeded');
  });

  it('malformed requests → 400 invalid_request_error', async () => {
    const post = (body: string) => fetch(`${sim.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    for (const body of [
      '{not json',
      '[]',
      JSON.stringify({ model: 'policy' }),
      JSON.stringify({ model: 'policy', messages: [{ content: 'x' }] }),
      JSON.stringify({ model: 'policy', messages: [{ role: 'user', content: 'x' }], n: 0 }),
    ]) {
      const res = await post(body);
      expect(res.status, body).toBe(400);
      const json = (await res.json()) as { error: { type: string } };
      expect(json.error.type).toBe('invalid_request_error');
    }
  });

  it('api_key: a missing or wrong bearer token → 401', async () => {
    const locked = await startSimulator({ api_key: 'sk-right', models: { policy: { behaviour: 'policy' } } });
    try {
      const wrong = await apiError(
        client(locked.url, { apiKey: 'sk-wrong' }).chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'hi' }] }),
      );
      expect(wrong.status).toBe(401);
      expect(wrong.code).toBe('invalid_api_key');
      const none = await fetch(`${locked.url}/models`);
      expect(none.status).toBe(401);
      const ok = await client(locked.url, { apiKey: 'sk-right' }).chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'hi' }] });
      expect(ok.choices[0]!.message.content).toMatch(/^Answer \(q=\d\.\d\d\): /);
      expect(locked.stats().requests).toBe(2);
      expect(locked.stats().byStatus).toEqual({ '401': 1, '200': 1 });
    } finally {
      await locked.close();
    }
  });
});

describe('stats', () => {
  it('counts requests, statuses and models, over HTTP too; reset zeroes them', async () => {
    sim.reset();
    await api.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'a' }] });
    await apiError(api.chat.completions.create({ model: 'ghost', messages: [{ role: 'user', content: 'a' }] }));
    await apiError(api.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'SIM_BAD_REQUEST' }] }));
    const s = sim.stats();
    expect(s.requests).toBe(3);
    expect(s.completed).toBe(3);
    expect(s.inFlight).toBe(0);
    expect(s.byModel).toEqual({ policy: 2, ghost: 1 });
    expect(s.byStatus).toEqual({ '200': 1, '404': 1, '400': 1 });
    const base = sim.url.replace(/\/v1$/, '');
    expect(await (await fetch(`${base}/sim/stats`)).json()).toEqual(s);
    expect((await fetch(`${base}/sim/reset`, { method: 'POST' })).status).toBe(200);
    expect(sim.stats()).toMatchObject({ requests: 0, completed: 0, maxInFlight: 0, byModel: {}, byStatus: {} });
  });

  it('maxInFlight is the most requests handled at once', async () => {
    sim.reset();
    const t0 = performance.now();
    await pool(
      Array.from({ length: 32 }, (_, i) => i),
      32,
      (i) => api.chat.completions.create({ model: 'slow', messages: [{ role: 'user', content: `q${i}` }] }),
    );
    // 32 requests of 400 ms each, all at once: about one latency, not 32.
    expect(performance.now() - t0).toBeLessThan(4000);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(400);
    const s = sim.stats();
    expect(s.maxInFlight).toBe(32);
    expect(s.inFlight).toBe(0);
    expect(s.completed).toBe(32);
  });
});
