/** Pure parts of the train stage: job keys, metrics lines, shell quoting, spec checks. */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parseMetrics, trainJobKey } from '../../activities/stages/train.js';
import { tailText } from '../../activities/train/backend.js';
import { shellCommand } from '../../activities/train/shell.js';
import { SpecError } from '../../spec/load.js';
import '../../spec/builtin.js';
import { specFromObject } from '../helpers/spec.js';
import './kinds.js';

describe('train job keys', () => {
  it('derive from run, stage and attempt only', () => {
    const k = trainJobKey('exp-abc123', 'train', 0);
    expect(k).toMatch(/^jf-[0-9a-f]{16}-a0$/);
    expect(trainJobKey('exp-abc123', 'train', 0)).toBe(k);
    expect(trainJobKey('exp-abc123', 'train', 1)).toBe(k.replace(/-a0$/, '-a1'));
    expect(trainJobKey('exp-abc123', 'train2', 0)).not.toBe(k);
    expect(trainJobKey('exp-abc124', 'train', 0)).not.toBe(k);
  });
});

describe('metrics.jsonl', () => {
  it('keeps lines with a numeric step, skips a torn last line and lines without a step', () => {
    const text = '{"step": 1, "loss": 2.5, "learning_rate": 5e-5}\n{"epoch": 1}\nnot json\n{"step": 2, "loss": 1.25}\n{"step": 3, "lo';
    expect(parseMetrics(text)).toEqual([
      { step: 1, loss: 2.5, values: { step: 1, loss: 2.5, learning_rate: 5e-5 } },
      { step: 2, loss: 1.25, values: { step: 2, loss: 1.25 } },
    ]);
  });
  it('a log tail starts at a line', () => {
    expect(tailText('aaaa\nbbbb\ncccc\n', 8)).toBe('cccc\n');
    expect(tailText('short', 100)).toBe('short');
  });
});

describe('shell quoting (Ray entrypoints, sbatch scripts)', () => {
  it('round-trips any argv through sh', () => {
    const argv = ['python3', '-c', 'import sys, json; print(json.dumps(sys.argv[1:]))', "it's", 'a b', '$HOME', '`x`', '{config}', '', 'plain-arg_1.0'];
    const out = execFileSync('sh', ['-c', shellCommand(argv)], { encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual(argv.slice(3));
  });
});

describe('train spec checks', () => {
  const spec = (train: Record<string, unknown>, sftKind = 'test-sft') => ({
    name: 'train-check',
    stages: [
      { id: 'sft', uses: sftKind, with: sftKind === 'test-sft' ? { path: '/x.jsonl' } : { items: 2 } },
      { id: 'train', uses: 'train', needs: ['sft'], with: { data: { from: 'sft' }, base_model: '/nonexistent-model', ...train } },
    ],
  });
  it('names an unknown placeholder in command with its path; Python braces are left alone', async () => {
    const err = await specFromObject(spec({ command: ['python3', '-c', "print({'a': 1})", '{confg}'] })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpecError);
    expect(String((err as Error).message)).toContain('stages[1].with.command[3]: unknown placeholder {confg}; known: {python} {trainers} {config}');
    expect(String((err as Error).message)).not.toContain('command[2]');
  });
  it('data must come from a stage that produces an sft-set', async () => {
    const err = await specFromObject(spec({}, 'test-work')).catch((e: unknown) => e);
    expect(String((err as Error).message)).toContain('stages[1].with.data.from: stage "sft" (test-work) produces nothing, not sft-set that data takes');
  });
  it('a missing base model folder only warns (the worker may have it); backend defaults to process', async () => {
    const loaded = await specFromObject(spec({}));
    expect(loaded.warnings.join('\n')).toContain('stages[1].with.base_model: no folder /nonexistent-model here');
    expect(loaded.plan[1]!.params).toMatchObject({ backend: { type: 'process' }, on_lost: 'fail', max_resubmits: 1, poll_s: 5 });
  });
});
