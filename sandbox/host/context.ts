/**
 * Per-module and per-call state shared by the host functions.
 *
 * @module
 */

import type { Manifest } from "../manifest.ts";
import type { KvStore } from "../kv.ts";
import type { Cost } from "../costs.ts";
import { ModuleFault } from "../errors.ts";

/** Negative result codes of the `edge` host functions (ABI v1). */
export const EdgeError = {
  /** A pointer or length lies outside the module's memory, or is negative. */
  FAULT: -1,
  /** The topic or path is not granted by the manifest. */
  DENIED: -2,
  /** No such key or sensor. */
  NOT_FOUND: -3,
  /** The output buffer is too small, or the input too large. */
  TOO_BIG: -4,
  /**
   * A quota is used up: kv bytes, what one call or one second may publish, or
   * the module's share of the runtime's thread (kv and sensor calls).
   */
  QUOTA: -5,
  /** Malformed input: invalid UTF-8, invalid topic or path. */
  INVALID: -6,
  /** The host failed to read or write (I/O error). */
  IO: -7,
} as const;

/**
 * Thrown by a {@link KvStore} whose answer would need more of a shared
 * resource than the module has left (its share of the runtime's thread); the
 * host function answers {@link EdgeError.QUOTA}.
 */
export class HostQuotaError extends Error {
  constructor(what: string) {
    super(`${what}: the module's share of the runtime's thread is used up for now`);
    this.name = "HostQuotaError";
  }
}

/** A message a module published during one call. */
export interface Published {
  topic: string;
  payload: Uint8Array;
}

/** A line a module logged. */
export interface LogLine {
  level: number;
  message: string;
}

/** Lines kept per call for the API answer; the device log gets the rate-limited rest. */
export const MAX_LOGS_PER_CALL = 100;
/** Bytes of log lines kept per call for the API answer. */
export const MAX_LOG_BYTES_PER_CALL = 64 * 1024;

/** A token bucket (capacity `burst`, refilled at `rate` tokens per second). */
export class TokenBucket {
  #tokens: number;
  #last = performance.now();
  constructor(readonly rate: number, readonly burst: number) {
    this.#tokens = burst;
  }
  /** Takes `n` tokens (default 1); false, taking none, when fewer are left. */
  take(n = 1): boolean {
    this.#refill();
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }

  /** Takes as many whole tokens as are left, up to `max` (one clock read for many takes); returns how many. */
  takeUpTo(max: number): number {
    this.#refill();
    const n = Math.max(0, Math.min(max, Math.floor(this.#tokens)));
    this.#tokens -= n;
    return n;
  }

  /** Gives back `n` tokens taken and not used. */
  giveBack(n: number): void {
    this.#tokens = Math.min(this.burst, this.#tokens + n);
  }

  /** True when `n` tokens could be taken now (takes none). */
  has(n: number): boolean {
    this.#refill();
    return this.#tokens >= n;
  }

  /** True while some tokens are left (after {@link TokenBucket.spend} there may be a debt). */
  available(): boolean {
    this.#refill();
    return this.#tokens > 0;
  }

  /** Takes `n` tokens whatever is left: a cost known only afterwards becomes a debt. */
  spend(n: number): void {
    this.#refill();
    this.#tokens -= n;
  }

  #refill(): void {
    const now = performance.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
  }
}

/**
 * What a module may publish per second, in messages and in bytes; kept by
 * whoever outlives the module's instances (a fault replaces the instance, not
 * its rate), so a module cannot reset it by faulting.
 */
export class PublishRate {
  readonly #messages: TokenBucket;
  readonly #bytes: TokenBucket;
  /** The rates of `manifest.limits`; a burst of one second's worth (bytes: at least one call's). */
  constructor(manifest: Manifest) {
    const l = manifest.limits;
    this.#messages = new TokenBucket(l.publish_messages_per_second, l.publish_messages_per_second);
    this.#bytes = new TokenBucket(
      l.publish_bytes_per_second,
      Math.max(l.publish_bytes_per_second, l.publish_bytes_per_call),
    );
  }
  /** Takes one message of `bytes`; false, taking nothing, when either rate is used up. */
  take(bytes: number): boolean {
    if (!this.#bytes.take(bytes)) return false;
    if (this.#messages.take()) return true;
    this.#bytes.spend(-bytes); // give the bytes back
    return false;
  }
}

/**
 * What {@link ModuleContext.unwind} takes from the fuel counter: far more than
 * any budget (at most 10^10), far from the i64 counter's floor (about -9.2 ×
 * 10^18), and exact as an f64.
 */
const FUEL_POISON = 2 ** 60;

/** What one guest call did, collected by the host functions. */
export class CallState {
  published: Published[] = [];
  /** Bytes of topics and payloads in `published`. */
  publishedBytes = 0;
  logs: LogLine[] = [];
  /** Bytes of the lines in `logs`. */
  logBytes = 0;
}

/**
 * Reads a sensor for `sensor_read`: checks `path` against the module's grants,
 * reads at most `out.length` bytes into `out`, and answers the byte count or a
 * negative {@link EdgeError} code.
 */
export type SensorReader = (path: string, out: Uint8Array) => number;

/** Sink for module log lines that passed the rate limit. */
export type LogSink = (module: string, level: number, message: string) => void;

/** State of one module instance that host functions read and write. */
export class ModuleContext {
  memory?: WebAssembly.Memory;
  #view: Uint8Array | undefined;
  call = new CallState();
  logsDropped = 0;
  readonly logBucket: TokenBucket;
  /** Partial stdout/stderr lines written through WASI `fd_write`, per fd. */
  readonly pendingOutput = new Map<number, string>();

  /** The instance's fuel charger (a metered module's export), set once instantiated. */
  #chargeFuel: ((fuel: number) => number) | undefined;
  /**
   * What a host function unwound the current call with ({@link unwind}), and
   * the fuel left at that moment; cleared when a call starts.
   */
  unwound: { err: unknown; fuelLeft: number | undefined } | undefined;

  constructor(
    readonly name: string,
    readonly manifest: Manifest,
    readonly kv: KvStore | undefined,
    readonly logSink: LogSink,
    logRate = { perSecond: 20, burst: 100 },
    /** Set when sensor reads happen elsewhere (the runtime's thread, for a Worker). */
    readonly sensor?: SensorReader,
    /** What the module may publish per second (shared by its successive instances). */
    readonly publishRate: PublishRate = new PublishRate(manifest),
  ) {
    this.logBucket = new TokenBucket(logRate.perSecond, logRate.burst);
  }

  /**
   * Binds the instance's fuel charger: a function that subtracts its argument
   * from the fuel counter and answers what is left. Unmetered instances have none.
   */
  bindFuel(charge: ((fuel: number) => number) | undefined): void {
    this.#chargeFuel = charge;
  }

  /**
   * Ends the guest call with `err` (`proc_exit`), whatever the guest does: a
   * guest that catches it (exception handling's `catch_all` catches what a
   * host function throws) stops at its next fuel charge, since the counter is
   * made negative here, and the call's outcome is `err` all the same. Returns
   * `err`, to be thrown.
   */
  unwind<E>(err: E): E {
    if (this.unwound === undefined) {
      const charge = this.#chargeFuel;
      this.unwound = { err, fuelLeft: charge?.(0) };
      charge?.(FUEL_POISON);
    }
    return err;
  }

  /**
   * Charges `cost.base + cost.perByte × bytes` fuel for host work, before it
   * is done. Host functions call it first thing.
   * @throws {ModuleFault} of kind `fuel` when the call's fuel is used up: the
   * guest call ends there, like a fuel trap in its own code.
   */
  charge(cost: Cost, bytes: number, what: string): void {
    const chargeFuel = this.#chargeFuel;
    if (chargeFuel === undefined) return;
    if (chargeFuel(cost.base + cost.perByte * bytes) < 0) {
      throw new ModuleFault(
        "fuel",
        `fuel exhausted in ${what}: the call used more than limits.fuel_per_message (${this.manifest.limits.fuel_per_message})`,
      );
    }
  }

  /**
   * The guest bytes [ptr, ptr+len), or null when the range falls outside the
   * memory. i32 arguments arrive as signed numbers and are read as unsigned
   * (Core spec 4.3.1), so a negative length becomes a huge one and fails the check.
   */
  bytes(ptr: number, len: number): Uint8Array | null {
    let u8 = this.#view;
    // memory.grow detaches the old buffer (its length drops to 0): take a new view then.
    if (u8 === undefined || u8.byteLength === 0) {
      if (!this.memory) return null;
      u8 = this.#view = new Uint8Array(this.memory.buffer);
    }
    const p = ptr >>> 0;
    const n = len >>> 0;
    // A view that is not detached spans the whole current memory: growth always detaches.
    if (p + n > u8.length) return null;
    return u8.subarray(p, p + n);
  }

  /**
   * The whole guest memory when [ptr, ptr+len) lies inside it, else null (see
   * {@link ModuleContext.bytes}; read the range at `ptr >>> 0`): no view per range.
   */
  memoryFor(ptr: number, len: number): Uint8Array | null {
    let u8 = this.#view;
    if (u8 === undefined || u8.byteLength === 0) {
      if (!this.memory) return null;
      u8 = this.#view = new Uint8Array(this.memory.buffer);
    }
    return (ptr >>> 0) + (len >>> 0) > u8.length ? null : u8;
  }

  /** Copies `src` to guest address `ptr`; false (nothing copied) when it does not fit in the memory. */
  write(ptr: number, src: Uint8Array): boolean {
    let u8 = this.#view;
    if (u8 === undefined || u8.byteLength === 0) {
      if (!this.memory) return false;
      u8 = this.#view = new Uint8Array(this.memory.buffer);
    }
    const p = ptr >>> 0;
    if (p + src.length > u8.length) return false;
    u8.set(src, p);
    return true;
  }

  /**
   * False when a line logged now would be neither kept for the call's answer
   * nor sent on (it would only be counted as dropped): then a host function
   * may count it with {@link ModuleContext.dropLog} without decoding it.
   */
  wantsLog(): boolean {
    const call = this.call;
    return (call.logs.length < MAX_LOGS_PER_CALL && call.logBytes < MAX_LOG_BYTES_PER_CALL) ||
      this.logBucket.has(1);
  }

  /** Counts a line that was not even decoded (see {@link ModuleContext.wantsLog}). */
  dropLog(): void {
    this.logsDropped++;
  }

  /** Records a log line: kept for the call's answer and sent on if the rate limit allows. */
  log(level: number, text: string): void {
    // ABI v1: at most 1024 bytes a line (UTF-16 length bounds the UTF-8 one from below;
    // a few multi-byte characters over is harmless, a megabyte line is not).
    const message = text.length > 1100 ? `${text.slice(0, 1024)} [truncated]` : text;
    const call = this.call;
    if (
      call.logs.length < MAX_LOGS_PER_CALL &&
      call.logBytes + message.length <= MAX_LOG_BYTES_PER_CALL
    ) {
      call.logs.push({ level, message });
      call.logBytes += message.length;
    }
    if (this.logBucket.take()) this.logSink(this.name, level, message);
    else this.logsDropped++;
  }
}
