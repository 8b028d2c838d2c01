/**
 * The system clock of a gateway: many have no real-time clock, boot in 1970
 * or at the time they last saved, and are set by days or years when NTP
 * first answers. What edged stamps with the system clock (when it received a
 * reading) has to survive that.
 *
 * @module
 */

/**
 * A system clock that reads before this is not set: a stamp taken by it says
 * nothing about when something happened.
 */
export const CLOCK_SET_AFTER_MS = Date.UTC(2026, 0, 1);

/** Whether `ms` (a reading of the system clock) can be a set clock's. */
export function clockIsSet(ms: number): boolean {
  return ms >= CLOCK_SET_AFTER_MS;
}

/** Options of {@linkcode ClockSteps}. */
export interface ClockStepsOptions {
  /**
   * A change of the system clock against the monotonic one between two
   * looks that counts as a step, in ms (NTP slews small errors at 0.5 ms a
   * second at most, and steps larger ones). @default {1000}
   */
  toleranceMs?: number;
  /** The system clock (tests set it). @default {Date.now} */
  now?: () => number;
  /** The monotonic clock. @default {performance.now} */
  monotonic?: () => number;
}

/**
 * Notices steps of the system clock: the difference between it and the
 * monotonic clock stays put while both run, and moves by as much as the
 * system clock is set. (A suspended machine's system clock also moves ahead
 * of the monotonic one: a suspend looks like a step forward.)
 */
export class ClockSteps {
  readonly #tolerance: number;
  readonly #now: () => number;
  readonly #monotonic: () => number;
  #offset: number;

  /** Starts watching from now. */
  constructor(options: ClockStepsOptions = {}) {
    this.#tolerance = options.toleranceMs ?? 1000;
    this.#now = options.now ?? (() => Date.now());
    this.#monotonic = options.monotonic ?? (() => performance.now());
    this.#offset = this.#now() - this.#monotonic();
  }

  /**
   * How far the system clock was stepped since the last look (ms, positive:
   * forward), or 0 when it only ran.
   */
  take(): number {
    const offset = this.#now() - this.#monotonic();
    const step = offset - this.#offset;
    this.#offset = offset;
    return Math.abs(step) >= this.#tolerance ? Math.round(step) : 0;
  }
}
