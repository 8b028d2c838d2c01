/**
 * A small deterministic PRNG (xoshiro128**, seeded through splitmix32), so
 * every fuzz input is a pure function of `(seed, index)` and any finding can
 * be regenerated from the two numbers in its report.
 *
 * @module
 */

/** splitmix32 step: spreads a 32-bit seed into well-mixed state words. */
function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) | 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** xoshiro128** (Blackman and Vigna), 32-bit output, period 2^128 - 1. */
export class Rng {
  #s = new Uint32Array(4);

  /** Seeds the generator from one or more 32-bit numbers (e.g. run seed and input index). */
  constructor(...seeds: number[]) {
    const st = { s: 0x2545f491 };
    for (const x of seeds) {
      st.s = (st.s ^ (x >>> 0) ^ Math.floor(x / 2 ** 32)) | 0;
      splitmix32(st);
    }
    for (let i = 0; i < 4; i++) this.#s[i] = splitmix32(st);
    if (this.#s.every((w) => w === 0)) this.#s[0] = 1;
  }

  /** Next 32-bit unsigned integer. */
  next(): number {
    const s = this.#s;
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  }

  /** Integer in `[0, n)`; `n` must be a positive integer below 2^32. */
  below(n: number): number {
    if (!(n > 0)) throw new RangeError(`below(n) needs n > 0, got ${n}`);
    return Math.floor((this.next() / 2 ** 32) * n);
  }

  /** Integer in `[lo, hi]`. */
  int(lo: number, hi: number): number {
    return lo + this.below(hi - lo + 1);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() / 2 ** 32 < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)];
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.next() & 0xff;
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
