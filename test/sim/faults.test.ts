/**
 * Injected faults: rates as configured, decided per (body, attempt) so a retried request
 * eventually succeeds with the same content a fault-free server gives; hangs end when the client
 * gives up or the server closes.
 */
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { startSimulator } from '../../sim/server.js';
import { client, pool } from './helpers.js';

const RATES = { rate_429: 0.1, rate_500: 0.05, rate_malformed: 0.05, rate_truncated: 0.05, rate_empty: 0.05 };
const N = 2000;

type Outcome = '429' | '500' | 'malformed' | 'truncated' | 'empty' | 'ok';

async function classify(api: OpenAI, content: string): Promise<{ outcome: Outcome; text?: string; retryAfter?: string | null }> {
  try {
    const res = await api.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content }] });
    const c = res.choices[0]!;
    if (c.message.content === '') return { outcome: 'empty' };
    if (c.finish_reason === 'length') return { outcome: 'truncated', text: c.message.content! };
    return { outcome: 'ok', text: c.message.content! };
  } catch (err) {
    if (err instanceof OpenAI.RateLimitError) return { outcome: '429', retryAfter: err.headers?.get('retry-after') };
    if (err instanceof OpenAI.InternalServerError) return { outcome: '500' };
    if (err instanceof SyntaxError) return { outcome: 'malformed' };
    throw err;
  }
}

describe('fault injection', () => {
  it('fault rates ≈ configured; retries of the same body succeed with the fault-free content', async () => {
    const sim = await startSimulator({ seed: 3, faults: { ...RATES, retry_after_s: 2 }, models: { policy: { behaviour: 'policy' } } });
    const clean = await startSimulator({ seed: 3, models: { policy: { behaviour: 'policy' } } });
    try {
      const api = client(sim.url);
      const prompts = Array.from({ length: N }, (_, i) => `Question ${i}: what is in the image?`);
      const first = await pool(prompts, 32, (p) => classify(api, p));
      const share = (o: Outcome) => first.filter((r) => r.outcome === o).length / N;
      expect(share('429')).toBeGreaterThan(0.07);
      expect(share('429')).toBeLessThan(0.13);
      for (const o of ['500', 'malformed', 'truncated', 'empty'] as const) {
        expect(share(o), o).toBeGreaterThan(0.03);
        expect(share(o), o).toBeLessThan(0.07);
      }
      expect(first.find((r) => r.outcome === '429')!.retryAfter).toBe('2');
      const s = sim.stats();
      expect(s.requests).toBe(N);
      expect(s.faults['429']).toBe(first.filter((r) => r.outcome === '429').length);
      expect(s.faults.malformed).toBe(first.filter((r) => r.outcome === 'malformed').length);
      expect(s.byStatus['500']).toBe(s.faults['500']);

      // Retry every faulted body until it succeeds: the nth attempt of a body has its own draw.
      const faulted = prompts.filter((_, i) => first[i]!.outcome !== 'ok');
      const attempts = await pool(faulted, 32, async (p) => {
        for (let attempt = 2; attempt <= 30; attempt++) {
          const r = await classify(api, p);
          if (r.outcome === 'ok') return { p, attempt, text: r.text! };
        }
        throw new Error(`never succeeded: ${p}`);
      });
      expect(Math.max(...attempts.map((a) => a.attempt))).toBeLessThan(10);
      const cleanApi = client(clean.url);
      for (const a of attempts.slice(0, 50)) {
        const ref = await cleanApi.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: a.p }] });
        expect(a.text).toBe(ref.choices[0]!.message.content);
      }
      // Truncated content is a prefix of the real one.
      const truncatedAt = prompts.findIndex((_, i) => first[i]!.outcome === 'truncated');
      const full = await cleanApi.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: prompts[truncatedAt]! }] });
      expect(full.choices[0]!.message.content!.startsWith(first[truncatedAt]!.text!)).toBe(true);
    } finally {
      await sim.close();
      await clean.close();
    }
  });

  it('faults are a function of (body, attempt): a reset replays the same sequence', async () => {
    const sim = await startSimulator({ faults: { rate_500: 0.5 }, models: { policy: { behaviour: 'policy' } } });
    try {
      const api = client(sim.url);
      const run = async () => {
        const seq: Outcome[] = [];
        for (let i = 0; i < 12; i++) seq.push((await classify(api, 'the same body')).outcome);
        return seq;
      };
      const a = await run();
      sim.reset();
      const b = await run();
      expect(b).toEqual(a);
      expect(new Set(a)).toEqual(new Set(['ok', '500']));
    } finally {
      await sim.close();
    }
  });

  it('max_faults_per_body caps faults per body; rate 1 without a cap always fails', async () => {
    const sim = await startSimulator({
      faults: { rate_500: 1 },
      models: { capped: { behaviour: 'policy', faults: { max_faults_per_body: 2 } }, broken: { behaviour: 'policy' } },
    });
    try {
      const api = client(sim.url);
      const call = (model: string) =>
        api.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }] }).then(
          () => 'ok',
          (e: { status?: number }) => String(e.status),
        );
      expect([await call('capped'), await call('capped'), await call('capped'), await call('capped')]).toEqual(['500', '500', 'ok', 'ok']);
      expect([await call('broken'), await call('broken'), await call('broken')]).toEqual(['500', '500', '500']);
    } finally {
      await sim.close();
    }
  });

  it('a hang ends when the client times out (counted as aborted) or when the server closes', async () => {
    const sim = await startSimulator({ faults: { rate_hang: 1, hang_ms: 600_000 }, models: { policy: { behaviour: 'policy' } } });
    const api = client(sim.url, { timeoutMs: 200 });
    const t0 = performance.now();
    await expect(api.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'x' }] })).rejects.toBeInstanceOf(
      OpenAI.APIConnectionTimeoutError,
    );
    expect(performance.now() - t0).toBeLessThan(2000);
    await expect.poll(() => sim.stats().aborted).toBe(1);
    expect(sim.stats()).toMatchObject({ inFlight: 0, faults: { hang: 1 }, completed: 0 });

    // Hanging requests do not keep the server (or the test process) alive.
    const patient = client(sim.url, { timeoutMs: 600_000 });
    const pending = patient.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'y' }] }).catch((e: unknown) => e);
    await expect.poll(() => sim.stats().inFlight).toBe(1);
    const c0 = performance.now();
    await sim.close();
    expect(performance.now() - c0).toBeLessThan(1000);
    expect(await pending).toBeInstanceOf(OpenAI.APIConnectionError);
  });

  it('a short hang answers normally after hang_ms', async () => {
    const sim = await startSimulator({ faults: { rate_hang: 1, hang_ms: 300 }, models: { policy: { behaviour: 'policy' } } });
    try {
      const t0 = performance.now();
      const res = await client(sim.url).chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: 'x' }] });
      expect(performance.now() - t0).toBeGreaterThanOrEqual(295);
      expect(res.choices[0]!.message.content).toMatch(/^Answer/);
    } finally {
      await sim.close();
    }
  });

  it('uniform latency: every request waits at least min_ms, and they overlap', async () => {
    const sim = await startSimulator({ latency: { kind: 'uniform', min_ms: 400, max_ms: 600 }, models: { policy: { behaviour: 'policy' } } });
    try {
      const api = client(sim.url);
      const times = await pool(
        Array.from({ length: 24 }, (_, i) => i),
        24,
        async (i) => {
          const t0 = performance.now();
          await api.chat.completions.create({ model: 'policy', messages: [{ role: 'user', content: `q${i}` }] });
          return performance.now() - t0;
        },
      );
      // Latencies long enough that all 24 overlap even when other test files load the machine.
      expect(Math.min(...times)).toBeGreaterThanOrEqual(398);
      expect(Math.max(...times)).toBeLessThan(5000);
      expect(sim.stats().maxInFlight).toBe(24);
    } finally {
      await sim.close();
    }
  });
});
