/**
 * A token bucket (the classic traffic-shaping algorithm): tokens are bytes,
 * refilled at `rate` per second up to `burst`; a consumer waits until the
 * bytes it wants to pass are covered. Used to cap download bandwidth.
 *
 * @module
 */

/** Options of {@linkcode TokenBucket}. */
export interface TokenBucketOptions {
  /** Sustained rate in bytes per second; 0 means unlimited. */
  rate: number;
  /** Most bytes that may pass at once after an idle period. @default {rate} */
  burst?: number;
  /** Clock in milliseconds (tests). @default {performance.now} */
  now?: () => number;
  /** Sleep (tests). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** Sleeps `ms` milliseconds, rejecting with the signal's reason when aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Bandwidth limiter.
 *
 * @example
 * ```ts
 * const bucket = new TokenBucket({ rate: 1 << 20, burst: 64 << 10 });
 * await bucket.take(16384); // waits while more than 1 MiB/s would pass
 * ```
 */
export class TokenBucket {
  /** Bytes per second (0: unlimited). */
  readonly rate: number;
  /** Bucket size in bytes. */
  readonly burst: number;
  #tokens: number;
  #last: number;
  readonly #now: () => number;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;

  /** Creates a full bucket. */
  constructor(options: TokenBucketOptions) {
    const { rate, burst = rate, now = () => performance.now(), sleep: sl = sleep } = options;
    if (!Number.isFinite(rate) || rate < 0) {
      throw new RangeError(`rate must be a number of bytes per second >= 0, got ${rate}`);
    }
    if (rate > 0 && (!Number.isFinite(burst) || burst < 1)) {
      throw new RangeError(`burst must be >= 1 byte, got ${burst}`);
    }
    this.rate = rate;
    this.burst = burst;
    this.#tokens = burst;
    this.#now = now;
    this.#sleep = sl;
    this.#last = now();
  }

  #refill(): void {
    const t = this.#now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((t - this.#last) * this.rate) / 1000);
    this.#last = t;
  }

  /**
   * Waits until `n` bytes may pass and takes them. Requests larger than the
   * burst are taken in burst-sized parts, so any size works.
   */
  async take(n: number, signal?: AbortSignal): Promise<void> {
    if (this.rate === 0) return;
    let left = n;
    while (left > 0) {
      const part = Math.min(left, this.burst);
      this.#refill();
      if (this.#tokens < part) {
        await this.#sleep(Math.ceil(((part - this.#tokens) * 1000) / this.rate), signal);
        this.#refill();
      }
      this.#tokens -= part;
      left -= part;
    }
  }
}
