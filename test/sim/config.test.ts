/** Simulator configs: files in YAML or JSON, errors that name the file and the field, the CLI entry. */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadSimConfig, parseSimConfig, SimConfigError } from '../../sim/config.js';
import { parseSimArgs } from '../../sim/main.js';
import { startSimulator } from '../../sim/server.js';
import { TruthFileError } from '../../sim/truth.js';
import { client, judgePrompt, loadVlrb, parseChoice, VLRB_PATH } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'jf-sim-config-'));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

describe('config', () => {
  it('fills defaults, including the default models', () => {
    const cfg = parseSimConfig({});
    expect(cfg.seed).toBe(0);
    expect(cfg.latency).toEqual({ kind: 'fixed', ms: 0 });
    expect(Object.keys(cfg.models)).toEqual(['judge', 'judge-first', 'policy', 'negatives', 'captioner', 'reasoner', 'grader']);
    expect(cfg.models.judge).toMatchObject({ behaviour: 'judge', accuracy: 0.8, first_bias: 0, labels: 'letters', answer_format: 'tag', think: true });
    expect(cfg.models['judge-first']).toMatchObject({ first_bias: 1 });
  });

  it('loads YAML with truth paths relative to the file', async () => {
    file(
      'truth.jsonl',
      `${JSON.stringify({ id: 'q1', candidates: ['Paris is the capital of France, by a wide margin.', 'Lyon is the capital of France, some people say.'], best: 0 })}\n`,
    );
    const path = file(
      'sim.yaml',
      [
        'seed: 4',
        'truth: truth.jsonl',
        'latency: { kind: lognormal, median_ms: 1, sigma: 0.3, max_ms: 5 }',
        'faults: { rate_429: 0.01 }',
        'models:',
        '  judge: { behaviour: judge, accuracy: 1 }',
        '  writer: { behaviour: negatives, identical_rate: 0.1, faults: { rate_429: 0 } }',
      ].join('\n'),
    );
    const cfg = loadSimConfig(path);
    expect(cfg.truth).toBe(join(dir, 'truth.jsonl'));
    expect(cfg.models.writer).toMatchObject({ behaviour: 'negatives', identical_rate: 0.1, empty_rate: 0 });
    const sim = await startSimulator(cfg);
    try {
      const res = await client(sim.url).chat.completions.create({
        model: 'judge',
        messages: [
          {
            role: 'user',
            content: judgePrompt('Capital?', ['Lyon is the capital of France, some people say.', 'Paris is the capital of France, by a wide margin.']),
          },
        ],
      });
      expect(parseChoice(res.choices[0]!.message.content!)).toBe(1);
    } finally {
      await sim.close();
    }
  });

  it('loads JSON', () => {
    const cfg = loadSimConfig(file('sim.json', JSON.stringify({ models: { p: { behaviour: 'policy', quality: 0.9 } } })));
    expect(cfg.models.p).toMatchObject({ behaviour: 'policy', quality: 0.9, quality_spread: 0.15 });
  });

  it('errors name the file and every bad field', () => {
    const path = file(
      'bad.yaml',
      'models:\n  j: { behaviour: judge, accuracy: 1.5, acuracy: 1 }\n  k: { behaviour: oracle }\nlatency: { kind: uniform, min_ms: 9, max_ms: 3 }\n',
    );
    expect(() => loadSimConfig(path)).toThrow(SimConfigError);
    let message = '';
    try {
      loadSimConfig(path);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain(path);
    expect(message).toContain('models.j.accuracy');
    expect(message).toContain('models.j: Unrecognized key: "acuracy"');
    expect(message).toContain('models.k.behaviour');
    expect(message).toContain('latency.max_ms');
    expect(() => loadSimConfig(file('sum.yaml', 'faults: { rate_429: 0.7, rate_500: 0.6 }\n'))).toThrow(/sum\.yaml:\n {2}faults: fault rates sum to 1\.300/);
    expect(() => loadSimConfig(file('syntax.yaml', 'models: [\n'))).toThrow(/syntax\.yaml is not valid YAML/);
    expect(() => loadSimConfig(join(dir, 'missing.yaml'))).toThrow(/cannot read simulator config .*missing\.yaml/);
  });

  it('truth file errors name the field, the file and the line', async () => {
    await expect(startSimulator({ models: { j: { behaviour: 'judge', truth: join(dir, 'none.jsonl') } } })).rejects.toThrow(
      /^models\.j\.truth: truth file .*none\.jsonl cannot be read/,
    );
    const broken = file('broken.jsonl', `${JSON.stringify({ candidates: ['a', 'b'], best: 0 })}\n{"response": ["a"], "human_ranking": [0, 1]}\n`);
    await expect(startSimulator({ truth: broken, models: { j: { behaviour: 'judge' } } })).rejects.toThrow(TruthFileError);
    await expect(startSimulator({ truth: broken, models: { j: { behaviour: 'judge' } } })).rejects.toThrow(/^truth: .*broken\.jsonl:2: `human_ranking`/);
  });
});

describe('judgeflow sim (CLI entry)', () => {
  it('parses flags', () => {
    expect(parseSimArgs([])).toEqual({ port: 8100, host: '127.0.0.1', config: undefined, help: false });
    expect(parseSimArgs(['--port=0', '--host', '0.0.0.0', '--config', 'x.yaml'])).toMatchObject({ port: 0, host: '0.0.0.0', config: 'x.yaml' });
    expect(() => parseSimArgs(['--port', 'abc'])).toThrow(/--port/);
    expect(() => parseSimArgs(['--bogus'])).toThrow(/unknown argument --bogus/);
  });

  it('serves the default models until SIGTERM', async () => {
    const main = fileURLToPath(new URL('../../sim/main.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', main, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await expect.poll(() => out.includes('Ctrl-C stops'), { timeout: 20_000 }).toBe(true);
      const url = /listening on (http:\/\/\S+\/v1)/.exec(out)![1]!;
      expect(out).toContain(`truth: ${VLRB_PATH}`);
      for (const m of ['judge ', 'judge-first', 'policy', 'negatives', 'captioner', 'reasoner']) expect(out).toContain(m);
      const r = loadVlrb()[0]!;
      const res = await client(url).chat.completions.create({
        model: 'judge-first',
        messages: [{ role: 'user', content: judgePrompt(r.query, r.response) }],
      });
      expect(parseChoice(res.choices[0]!.message.content!)).toBe(0);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(out).toMatch(/SIGTERM: stopping after 1 requests/);
  });
});
