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

/** A step of the system clock that the stamps of rows up to id `upTo` do not follow yet. */
export interface OwedStep {
  upTo: number;
  deltaMs: number;
}

/** Options of {@linkcode StampFollower}. */
export interface StampFollowerOptions {
  /** The first id this process stamps (rows below it carry an earlier run's clock). */
  firstId: number;
  /** The highest id stamped so far. */
  lastId: () => number;
  /** Whether a transaction is being written now: the move then goes into the next one. */
  writing: () => boolean;
  /**
   * Moves, for each owed step, the stamps of ids `firstId..upTo` by its
   * `deltaMs`, in one transaction; rejects (when nothing moved) to be tried
   * again at the next look.
   */
  move: (owed: readonly OwedStep[]) => Promise<void>;
  /** A step was seen (its move is still to come). */
  onStep?: (deltaMs: number) => void;
  /** The clocks to watch (tests). */
  steps?: ClockSteps;
}

/**
 * Keeps the system-clock stamps of a table's rows (when a reading was
 * received, when a message was accepted) true to the time they have waited
 * when NTP steps the clock: the stamps this process took before a step move
 * by as much. Whoever stamps looks first ({@linkcode StampFollower.follow}),
 * so the rows stamped before a step are exactly those up to the last id when
 * it is seen, and the move can come later, in the next transaction.
 */
export class StampFollower {
  readonly #o: StampFollowerOptions;
  readonly #steps: ClockSteps;
  #owed: OwedStep[] = [];
  #moving = false;

  /** Follows from now. */
  constructor(options: StampFollowerOptions) {
    this.#o = options;
    this.#steps = options.steps ?? new ClockSteps();
  }

  /** Looks at the clock; returns whether a move is still owed (ages are not to be trusted yet). */
  follow(): boolean {
    const deltaMs = this.#steps.take();
    const lastId = this.#o.lastId();
    if (deltaMs !== 0 && lastId >= this.#o.firstId) {
      this.#owed.push({ upTo: lastId, deltaMs });
      this.#o.onStep?.(deltaMs);
    }
    if (this.#owed.length > 0 && !this.#moving) {
      if (this.#o.writing()) queueMicrotask(() => this.follow());
      else this.#move();
    }
    return this.#owed.length > 0;
  }

  /** Ids above `lastId` were given back (a rollback): whoever gets them stamps after every step seen. */
  clampTo(lastId: number): void {
    for (const o of this.#owed) o.upTo = Math.min(o.upTo, lastId);
  }

  #move(): void {
    const owed = this.#owed.slice();
    this.#moving = true;
    this.#o.move(owed).then(
      () => void this.#owed.splice(0, owed.length),
      () => {/* owed still: the next look tries again */},
    ).finally(() => this.#moving = false);
  }
}
