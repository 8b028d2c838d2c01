/**
 * Per-module and per-call state shared by the host functions.
 *
 * @module
 */

import type { Manifest } from "../manifest.ts";
import type { KvStore } from "../kv.ts";

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
  /** A quota is used up (kv bytes, publish rate). */
  QUOTA: -5,
  /** Malformed input: invalid UTF-8, invalid topic or path. */
  INVALID: -6,
  /** The host failed to read or write (I/O error). */
  IO: -7,
} as const;

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
/** Messages one call may publish. */
export const MAX_PUBLISH_PER_CALL = 1000;

/** A token bucket (capacity `burst`, refilled at `rate` tokens per second). */
export class TokenBucket {
  #tokens: number;
  #last = performance.now();
  constructor(readonly rate: number, readonly burst: number) {
    this.#tokens = burst;
  }
  /** Takes one token; false when none is left. */
  take(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/** What one guest call did, collected by the host functions. */
export class CallState {
  published: Published[] = [];
  logs: LogLine[] = [];
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

  constructor(
    readonly name: string,
    readonly manifest: Manifest,
    readonly kv: KvStore | undefined,
    readonly logSink: LogSink,
    logRate = { perSecond: 20, burst: 100 },
    /** Set when sensor reads happen elsewhere (the runtime's thread, for a Worker). */
    readonly sensor?: SensorReader,
  ) {
    this.logBucket = new TokenBucket(logRate.perSecond, logRate.burst);
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

  /** Records a log line: kept for the call's answer and sent on if the rate limit allows. */
  log(level: number, text: string): void {
    // ABI v1: at most 1024 bytes a line (UTF-16 length bounds the UTF-8 one from below;
    // a few multi-byte characters over is harmless, a megabyte line is not).
    const message = text.length > 1100 ? `${text.slice(0, 1024)} [truncated]` : text;
    if (this.call.logs.length < MAX_LOGS_PER_CALL) this.call.logs.push({ level, message });
    if (this.logBucket.take()) this.logSink(this.name, level, message);
    else this.logsDropped++;
  }
}
