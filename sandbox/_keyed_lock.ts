/**
 * Work that takes turns per key: what runs for one module (an install, a
 * removal, a reload) waits for what was started for it before, whether that
 * succeeded or not; different modules do not wait for each other.
 *
 * @module
 */

/**
 * At most `limit` holders at a time per key; the rest wait their turn, in
 * order. Different keys do not wait for each other.
 */
export class KeyedSlots {
  readonly #keys = new Map<string, { active: number; waiting: (() => void)[] }>();

  constructor(readonly limit: number) {}

  /** Runs `fn` in a slot of `key`, once one is free; answers what `fn` does. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    let k = this.#keys.get(key);
    if (!k) this.#keys.set(key, k = { active: 0, waiting: [] });
    if (k.active < this.limit) k.active++;
    else await new Promise<void>((resolve) => k!.waiting.push(resolve)); // handed a slot
    try {
      return await fn();
    } finally {
      const next = k.waiting.shift();
      if (next) next();
      else if (--k.active === 0) this.#keys.delete(key);
    }
  }
}

/** One queue of turns per key: a {@linkcode KeyedSlots} of one slot. */
export class KeyedLock extends KeyedSlots {
  constructor() {
    super(1);
  }
}
