/**
 * Per-endpoint admission control of one worker process: a FIFO limit on requests in flight, a pause
 * (after a 429: no new request starts before the server's retry-after), and optional token buckets
 * for requests/minute and tokens/minute.
 */
import { InferenceAbortedError } from './errors.js';

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new InferenceAbortedError('aborted while waiting'));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new InferenceAbortedError('aborted while waiting'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

interface Waiter {
  priority: number;
  seq: number;
  resolve: () => void;
  reject: (err: Error) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
  /** Aborted while queued: skipped when it reaches the top. */
  gone?: boolean;
}

const before = (a: Waiter, b: Waiter) => a.priority < b.priority || (a.priority === b.priority && a.seq < b.seq);

/**
 * A counting semaphore whose limit can change while in use. Waiters are served lowest `priority`
 * first, and in arrival order among equals (all priorities equal: plain FIFO).
 */
export class Semaphore {
  private active = 0;
  /** A binary min-heap of waiters by (priority, seq). */
  private heap: Waiter[] = [];
  private live = 0;
  private seq = 0;

  constructor(private limit: number) {}

  get inFlight(): number {
    return this.active;
  }

  get waiting(): number {
    return this.live;
  }

  setLimit(limit: number): void {
    this.limit = limit;
    this.drain();
  }

  /** Takes a slot now if one is free and nobody waits. */
  tryAcquire(): boolean {
    if (this.active < this.limit && this.live === 0) {
      this.active++;
      return true;
    }
    return false;
  }

  acquire(signal?: AbortSignal, priority = 0): Promise<void> {
    if (signal?.aborted) return Promise.reject(new InferenceAbortedError('aborted while queued'));
    if (this.tryAcquire()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { priority, seq: this.seq++, resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          waiter.gone = true;
          this.live--;
          reject(new InferenceAbortedError('aborted while queued'));
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.push(waiter);
      this.live++;
      // Only aborted waiters may be ahead of it.
      this.drain();
    });
  }

  release(): void {
    this.active--;
    this.drain();
  }

  private drain(): void {
    while (this.active < this.limit && this.heap.length > 0) {
      const w = this.pop();
      if (w.gone) continue;
      this.live--;
      if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
      this.active++;
      w.resolve();
    }
  }

  private push(w: Waiter): void {
    const h = this.heap;
    h.push(w);
    for (let i = h.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private pop(): Waiter {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

/**
 * A token bucket refilled continuously at `perMinute / 60` per second, holding at most 10 s worth
 * (and at least one request's worth). A take larger than the capacity waits for a full bucket and
 * then goes into debt, so oversized requests still pass, spaced out.
 */
export class TokenBucket {
  private level: number;
  private last = Date.now();
  private readonly capacity: number;
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly perMinute: number) {
    this.capacity = Math.max(1, perMinute / 6);
    this.level = this.capacity;
  }

  private refill(): void {
    const now = Date.now();
    this.level = Math.min(this.capacity, this.level + ((now - this.last) / 60_000) * this.perMinute);
    this.last = now;
  }

  /** Takes `amount`; callers are served in order. */
  take(amount: number, signal?: AbortSignal): Promise<void> {
    const turn = this.chain.then(async () => {
      const need = Math.min(amount, this.capacity);
      for (;;) {
        this.refill();
        if (this.level >= need) break;
        await sleep(Math.ceil(((need - this.level) / this.perMinute) * 60_000), signal);
      }
      this.level -= amount;
    });
    // The chain only orders callers; each caller sees its own rejection through `turn`.
    this.chain = turn.catch(() => undefined);
    return turn;
  }
}

export interface EndpointLimits {
  concurrency: number;
  rpm?: number;
  tpm?: number;
}

/** The admission control of one endpoint (server + model) within this worker process. */
export class EndpointLimiter {
  private readonly slots: Semaphore;
  private rpm?: TokenBucket;
  private tpm?: TokenBucket;
  private pausedUntil = 0;
  private limits: EndpointLimits;

  constructor(limits: EndpointLimits) {
    this.limits = limits;
    this.slots = new Semaphore(limits.concurrency);
    this.configure(limits);
  }

  /** The latest spec wins (a resumed run may have changed the concurrency). */
  configure(limits: EndpointLimits): void {
    if (limits.concurrency !== this.limits.concurrency) this.slots.setLimit(limits.concurrency);
    if (limits.rpm !== this.limits.rpm || !this.rpm) this.rpm = limits.rpm ? new TokenBucket(limits.rpm) : undefined;
    if (limits.tpm !== this.limits.tpm || !this.tpm) this.tpm = limits.tpm ? new TokenBucket(limits.tpm) : undefined;
    this.limits = limits;
  }

  get inFlight(): number {
    return this.slots.inFlight;
  }

  /** No request of this endpoint starts before `ms` from now. */
  pause(ms: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, Date.now() + ms);
  }

  /**
   * Waits for a slot, the end of any pause and the rate buckets; call `release()` after the
   * response. Returns undefined (no promise) when a slot is free and nothing else applies.
   */
  acquire(estimatedTokens: number, signal?: AbortSignal): Promise<void> | undefined {
    if (!this.rpm && !this.tpm && this.pausedUntil <= Date.now() && this.slots.tryAcquire()) return undefined;
    return this.acquireSlow(estimatedTokens, signal);
  }

  private async acquireSlow(estimatedTokens: number, signal?: AbortSignal): Promise<void> {
    await this.slots.acquire(signal);
    try {
      for (let wait = this.pausedUntil - Date.now(); wait > 0; wait = this.pausedUntil - Date.now()) await sleep(wait, signal);
      if (this.rpm) await this.rpm.take(1, signal);
      if (this.tpm) await this.tpm.take(estimatedTokens, signal);
      // A 429 may have arrived while this caller waited for the buckets.
      for (let wait = this.pausedUntil - Date.now(); wait > 0; wait = this.pausedUntil - Date.now()) await sleep(wait, signal);
    } catch (err) {
      this.slots.release();
      throw err;
    }
  }

  release(): void {
    this.slots.release();
  }
}
