/**
 * Reconnect delays: exponential back-off with jitter, so a fleet that lost
 * its broker at the same moment does not come back at the same moment.
 *
 * @module
 */

/** Options for {@linkcode backoffDelay}. */
export interface BackoffOptions {
  /** Delay of the first retry in milliseconds. @default {500} */
  minMs?: number;
  /** Longest delay in milliseconds. @default {30000} */
  maxMs?: number;
  /** Source of randomness in [0, 1). @default {Math.random} */
  random?: () => number;
}

/**
 * The delay before retry number `attempt` (0 for the first): the capped
 * exponential `min(maxMs, minMs * 2^attempt)`, of which the upper half is
 * randomised ("equal jitter"), so it never drops below half the step and
 * never spins.
 *
 * @example
 * ```ts
 * backoffDelay(3, { minMs: 500, maxMs: 30_000 }); // between 2000 and 4000
 * ```
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const { minMs = 500, maxMs = 30_000, random = Math.random } = options;
  if (!Number.isInteger(attempt) || attempt < 0) {
    throw new RangeError(`attempt must be a non-negative integer, got ${attempt}`);
  }
  if (!(minMs > 0) || !(maxMs >= minMs)) {
    throw new RangeError(`need 0 < minMs <= maxMs, got minMs=${minMs} maxMs=${maxMs}`);
  }
  const step = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 52));
  return step / 2 + random() * (step / 2);
}
