import { createRng } from './rng.js';

/**
 * How candidate orders ("views") are chosen for an item:
 * - `swap`: every item is judged in all K cyclic shifts of its candidates (K = 2: both orders),
 *   so each candidate appears once at every position — position bias cancels out.
 * - `random`: one permutation per item, drawn from a PRNG seeded by (run seed, item key), so a
 *   rerun with the same seed shows the same orders.
 * - `none`: the dataset's order. Beware: on VL-RewardBench the first response is the preferred
 *   one in 1,245 of 1,250 items.
 */
export type ViewMode = 'swap' | 'random' | 'none';

export const VIEW_MODES: readonly ViewMode[] = ['swap', 'random', 'none'];

/**
 * The views of one item: a list of permutations where `perm[p]` is the index of the candidate
 * shown at position `p`. View `v` of an item is `viewsFor(...)[v]`.
 */
export function viewsFor(mode: ViewMode, k: number, seed: number | string, itemKey: string): number[][] {
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`viewsFor: k must be a positive integer, got ${k}`);
  switch (mode) {
    case 'none':
      return [identity(k)];
    case 'swap': {
      const views: number[][] = [];
      for (let shift = 0; shift < k; shift++) {
        const perm = new Array<number>(k);
        for (let p = 0; p < k; p++) perm[p] = (p + shift) % k;
        views.push(perm);
      }
      return views;
    }
    case 'random':
      return [seededPermutation(k, seed, itemKey)];
    default: {
      const unknown: never = mode;
      throw new RangeError(`viewsFor: unknown view mode ${String(unknown)}`);
    }
  }
}

/** Fisher–Yates over a stream seeded by (seed, itemKey). */
export function seededPermutation(k: number, seed: number | string, itemKey: string): number[] {
  const rng = createRng('judgeflow/views', seed, itemKey);
  const perm = identity(k);
  for (let i = k - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const tmp = perm[i]!;
    perm[i] = perm[j]!;
    perm[j] = tmp;
  }
  return perm;
}

/** Applies a view to the candidates: the texts in the order the judge sees them. */
export function applyView<T>(candidates: readonly T[], perm: readonly number[]): T[] {
  if (perm.length !== candidates.length) {
    throw new RangeError(`applyView: permutation of length ${perm.length} for ${candidates.length} candidates`);
  }
  return perm.map((c) => {
    const v = candidates[c];
    if (v === undefined) throw new RangeError(`applyView: permutation names candidate ${c}, out of range`);
    return v;
  });
}

function identity(k: number): number[] {
  return Array.from({ length: k }, (_, i) => i);
}
