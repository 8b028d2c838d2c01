/**
 * Work that takes turns per key: what runs for one module (an install, a
 * removal, a reload) waits for what was started for it before, whether that
 * succeeded or not; different modules do not wait for each other.
 *
 * @module
 */

/** One queue of turns per key. */
export class KeyedLock {
  readonly #tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` once everything started earlier for `key` has settled; answers what `fn` does. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    this.#tails.set(key, next);
    try {
      return await next;
    } finally {
      if (this.#tails.get(key) === next) this.#tails.delete(key);
    }
  }
}
