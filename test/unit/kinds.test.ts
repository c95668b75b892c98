import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import '../../spec/builtin.js';
import { getStageKind, kindsWithoutWorkflow, registerStageKind, stageKindNames, type StageWorkflowType } from '../../spec/kinds.js';
import * as workflows from '../../workflows/index.js';
import { MC_FORMATS } from '../../activities/datasets/mc.js';
import { DATASET_FORMAT_NAMES, formatsOf } from '../../spec/artifacts.js';

describe('stage kind registry', () => {
  it('every shipped kind names a workflow function that workflows/index.ts exports', () => {
    expect(stageKindNames()).toEqual(expect.arrayContaining(['evaluate', 'synthesize', 'distill']));
    expect(kindsWithoutWorkflow(workflows)).toEqual([]);
  });

  it('a kind whose workflow is not exported is reported', () => {
    registerStageKind({ kind: 'ghost', description: 'test only', workflowType: 'ghostStage' as StageWorkflowType, params: z.object({}) });
    expect(getStageKind('ghost')).toBeDefined();
    expect(kindsWithoutWorkflow(workflows)).toEqual(['ghost → ghostStage']);
  });

  it('kinds declare what they consume and produce', () => {
    expect(getStageKind('synthesize')!.produces).toEqual({ items: 'mc-items' });
    expect(getStageKind('synthesize')!.consumes!({ items: 'easy' } as never)).toEqual([{ param: 'items', ref: 'easy', kind: 'qa-items' }]);
    expect(getStageKind('distill')!.produces).toEqual({ sft: 'sft-set', rl: 'rl-set' });
    expect(getStageKind('distill')!.consumes!({ items: { from: 'synth' } } as never)).toEqual([{ param: 'items', ref: { from: 'synth' }, kind: 'mc-items' }]);
    expect(getStageKind('evaluate')!.consumes!({ dataset: { from: 'synth' } } as never)).toEqual([
      { param: 'dataset', ref: { from: 'synth' }, kind: 'mc-items' },
    ]);
    // A served model as the judge: an `endpoint` from a serve stage, and no spec endpoint to check.
    const served = { dataset: 'vlrb', judge: { from: 'serve-trained' } } as never;
    expect(getStageKind('evaluate')!.consumes!(served)).toEqual([
      { param: 'dataset', ref: 'vlrb', kind: 'mc-items' },
      { param: 'judge', ref: { from: 'serve-trained' }, kind: 'endpoint' },
    ]);
    expect(getStageKind('evaluate')!.endpoints!(served)).toEqual([]);
    expect(getStageKind('serve')!.produces).toEqual({ endpoint: 'endpoint' });
    expect(getStageKind('serve')!.reusable).toBe(false);
    expect(getStageKind('serve')!.consumes!({ model: { from: 'train' } } as never)).toEqual([{ param: 'model', ref: { from: 'train' }, kind: 'checkpoint' }]);
    expect(getStageKind('serve')!.consumes!({ model: { path: '/m' } } as never)).toEqual([]);
  });

  it('dataset formats are written once: the loaders take the formats DATASET_FORMATS maps to their kind', () => {
    expect(MC_FORMATS).toEqual(['vl-rewardbench', 'vl-rewardbench-parquet', 'mc-jsonl']);
    expect(formatsOf('qa-items')).toEqual(['qa-jsonl', 'llava', 'hf-parquet', 'easy-vqa', 'mm-vet']);
    expect([...MC_FORMATS, ...formatsOf('qa-items')].sort()).toEqual([...DATASET_FORMAT_NAMES].sort());
  });
});
