import { describe, expect, it } from 'vitest';
import { chunkSizeFor, MAX_CHUNKS } from '../../workflows/inference.js';

describe('chunk sizing', () => {
  it('keeps the requested size until the chunks would pass MAX_CHUNKS, then grows them', () => {
    expect(chunkSizeFor(7_500, 500)).toBe(500);
    expect(chunkSizeFor(10, 500)).toBe(500);
    expect(chunkSizeFor(0, 500)).toBe(500);
    expect(chunkSizeFor(100, 0)).toBe(1);
    // 100k items x 2 orders x 16 samples, 15 items (480 requests) wanted per chunk:
    const items = 100_000;
    const size = chunkSizeFor(items, 15);
    expect(size).toBe(250);
    expect(Math.ceil(items / size)).toBeLessThanOrEqual(MAX_CHUNKS);
    for (const n of [1, 399, 400, 401, 12_345, 3_000_000]) expect(Math.ceil(n / chunkSizeFor(n, 1))).toBeLessThanOrEqual(MAX_CHUNKS);
  });
});
