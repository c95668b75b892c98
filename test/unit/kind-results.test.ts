/** `judgeflow results` for kinds other than evaluate: a renderer per kind, the summary otherwise. */
import { describe, expect, it } from 'vitest';
import { renderKindResults } from '../../cli/kind-results.js';
import type { ArtifactListing } from '../../db/artifacts.js';

const artifact = (a: Partial<ArtifactListing> & Pick<ArtifactListing, 'id' | 'kind' | 'name' | 'stageId' | 'rows' | 'summary'>): ArtifactListing => ({
  source: null,
  format: null,
  contentHash: 'ab'.repeat(32),
  parents: [],
  sealed: true,
  ...a,
});

describe('renderKindResults', () => {
  const synth = artifact({
    id: 7,
    kind: 'mc-items',
    name: 'items',
    stageId: 'synth',
    rows: 8,
    summary: {
      source_items: 10,
      items: 8,
      k: 3,
      dropped: { 'fewer than 2 kept negative(s)': 2 },
      error_types: {
        hallucination: { requested: 10, written: 9, kept: 7, filtered: { empty: 1, refusal: 1 }, request_failed: 1 },
        wrong_knowledge: { requested: 10, written: 10, kept: 8, filtered: { near_identical: 2 }, request_failed: 0 },
      },
    },
  });
  const checkpoint = artifact({ id: 9, kind: 'checkpoint', name: 'checkpoint', stageId: 'train', rows: 1, summary: { steps: 16, final_loss: 0.5 } });

  it('synthesize: requested, written, failed, filtered by reason and kept per error type, a total, the dropped items', () => {
    const [text] = renderKindResults([{ stageId: 'synth', kind: 'synthesize', output: {} }], [synth]);
    expect(text!.split('\n')).toEqual([
      '',
      'negatives of stage synth (artifact 7 "items": 8 mc-items of 10 source items, K ≤ 3)',
      'error type       requested  written  failed  filtered:empty  filtered:near_identical  filtered:refusal  kept',
      '---------------  ---------  -------  ------  --------------  -----------------------  ----------------  ----',
      'hallucination    10         9        1       1               0                        1                 7',
      'wrong_knowledge  10         10       0       0               2                        0                 8',
      'total            20         19       1       1               2                        1                 15',
      'dropped items: 2 (fewer than 2 kept negative(s))',
    ]);
  });

  it('a kind without a renderer shows each artifact with its summary, or its output when it made none; nothing when it has neither', () => {
    const out = renderKindResults(
      [
        { stageId: 'train', kind: 'train', output: { ref: { ignored: true } } },
        { stageId: 'work', kind: 'test-work', output: { ref: { items: 3 } } },
        { stageId: 'idle', kind: 'test-work', output: null },
      ],
      [checkpoint, synth],
    );
    expect(out).toEqual([
      '\nstage train (train): checkpoint "checkpoint", 1 rows, summary {"steps":16,"final_loss":0.5}',
      '\nstage work (test-work): {"items":3}',
    ]);
  });
});
