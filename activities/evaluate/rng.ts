import { createHash } from 'node:crypto';

/** A seeded pseudo-random stream: the same seed parts always give the same sequence. */
export interface Rng {
  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number;
  /** Uniform integer in [0, n), without modulo bias; n in [1, 2^32]. */
  nextInt(n: number): number;
  /** Uniform float in [0, 1). */
  nextFloat(): number;
  /**
   * `count` draws of nextInt(n) into out[0, count): the same values, in the same order, as `count`
   * calls (the bootstrap's inner loop, without a call and the state's loads and stores per draw).
   */
  fillInt(n: number, out: Int32Array, count: number): void;
}

const TWO_32 = 0x1_0000_0000;
const TWO_21 = 0x20_0000;
const INV_TWO_32 = 1 / TWO_32;

/**
 * xoshiro128** seeded from sha256 of the parts (joined with NUL). sha256 gives independent streams
 * for near-identical seeds (run seed + item key); xoshiro keeps the bootstrap's millions of draws
 * cheap.
 */
export function createRng(...parts: ReadonlyArray<string | number>): Rng {
  const digest = createHash('sha256').update(parts.map(String).join('\u0000')).digest();
  return new Xoshiro128(digest.readUInt32LE(0), digest.readUInt32LE(4), digest.readUInt32LE(8), digest.readUInt32LE(12));
}

class Xoshiro128 implements Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(s0: number, s1: number, s2: number, s3: number) {
    // An all-zero state is xoshiro's one fixed point.
    this.s0 = (s0 | s1 | s2 | s3) === 0 ? 1 : s0 | 0;
    this.s1 = s1 | 0;
    this.s2 = s2 | 0;
    this.s3 = s3 | 0;
  }

  nextUint32(): number {
    const s1 = this.s1;
    const x = Math.imul(s1, 5);
    const result = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
    const t = s1 << 9;
    const s2 = this.s2 ^ this.s0;
    const s3 = this.s3 ^ s1;
    this.s1 = s1 ^ s2;
    this.s0 = this.s0 ^ s3;
    this.s2 = s2 ^ t;
    this.s3 = (s3 << 11) | (s3 >>> 21);
    return result;
  }

  nextInt(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_32) throw new RangeError(`nextInt: n must be an integer in [1, 2^32], got ${n}`);
    if (n <= TWO_21) {
      // Lemire's multiply-and-reject: x·n is exact below 2^53, its high 32 bits are the draw.
      let m = this.nextUint32() * n;
      let low = m >>> 0;
      if (low < n) {
        const threshold = (TWO_32 - n) % n;
        while (low < threshold) {
          m = this.nextUint32() * n;
          low = m >>> 0;
        }
      }
      return Math.floor(m / TWO_32);
    }
    const limit = TWO_32 - (TWO_32 % n);
    let x = this.nextUint32();
    while (x >= limit) x = this.nextUint32();
    return x % n;
  }

  nextFloat(): number {
    return this.nextUint32() / TWO_32;
  }

  fillInt(n: number, out: Int32Array, count: number): void {
    if (count <= 0) return;
    if (!Number.isInteger(n) || n < 1 || n > TWO_21) {
      for (let i = 0; i < count; i++) out[i] = this.nextInt(n);
      return;
    }
    // nextUint32 and nextInt's multiply-and-reject inlined (threshold < n, so a draw below it is
    // one nextInt would reject too).
    const threshold = (TWO_32 - n) % n;
    let s0 = this.s0;
    let s1 = this.s1;
    let s2 = this.s2;
    let s3 = this.s3;
    for (let i = 0; i < count; i++) {
      let m: number;
      let hi: number;
      do {
        const x = Math.imul(s1, 5);
        const r = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
        const t = s1 << 9;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = (s3 << 11) | (s3 >>> 21);
        m = r * n;
        hi = (m * INV_TWO_32) | 0; // the draw: m's high 32 bits (m < 2^53, hi < n <= 2^21)
      } while (m - hi * TWO_32 < threshold);
      out[i] = hi;
    }
    this.s0 = s0;
    this.s1 = s1;
    this.s2 = s2;
    this.s3 = s3;
  }
}
