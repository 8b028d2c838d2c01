/**
 * The messages between the runtime's thread ({@link WorkerPool} in
 * `pool.ts`) and a sandbox Worker (`worker.ts`), and the layout of the shared
 * buffer through which a Worker makes its few synchronous calls into the
 * runtime (kv and sensor reads: the Worker itself has no permissions).
 *
 * @module
 */

import { TopicCache } from "../lib/mod.ts";
import type { FaultKind } from "./errors.ts";
import type { LogLine, Published } from "./host/context.ts";
import type { CallOutcome, RunnableModule } from "./instance.ts";
import type { NnLinkInit } from "./nn/link.ts";
import type { KvWrite } from "./kv.ts";

/** Module log lines per second and burst that reach the device log. */
export interface LogRate {
  perSecond: number;
  burst: number;
}

/**
 * How much of the runtime's thread the kv and sensor calls of a Worker's
 * modules may take, in milliseconds per second (round trips measured by the
 * Worker), each module and the Worker's modules together; the burst is one
 * second's worth.
 */
export interface ThreadShare {
  moduleMsPerSecond: number;
  workerMsPerSecond: number;
}

/** One message for one instance. */
export interface WireCall {
  inst: number;
  topic: string;
  payload: Uint8Array;
}

/**
 * A batch of calls as it crosses to the Worker: one buffer (transferred, not
 * cloned), per call three Int32 words (instance, topic bytes, payload bytes),
 * then every call's topic (UTF-8) and payload bytes back to back. A batch of
 * objects each holding a Uint8Array costs the structured clone about twice as
 * much on both threads.
 */
export interface PackedCalls {
  n: number;
  buf: ArrayBuffer;
}

const utf8 = new TextEncoder();
/** Topics encoded lately (deliveries repeat their topics). */
const topicBytes = new TopicCache<Uint8Array>(4096, (t) => utf8.encode(t));

/** Packs `calls` into one buffer (see {@link PackedCalls}). */
export function packCalls(calls: readonly WireCall[]): PackedCalls {
  const n = calls.length;
  const topics = new Array<Uint8Array>(n);
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const t = topics[i] = topicBytes.get(calls[i].topic);
    bytes += t.length + calls[i].payload.length;
  }
  const head = n * 3 * 4;
  const buf = new ArrayBuffer(head + bytes);
  const words = new Int32Array(buf, 0, n * 3);
  const out = new Uint8Array(buf);
  let at = head;
  for (let i = 0; i < n; i++) {
    const { inst, payload } = calls[i];
    const t = topics[i];
    words[i * 3] = inst;
    words[i * 3 + 1] = t.length;
    words[i * 3 + 2] = payload.length;
    out.set(t, at);
    at += t.length;
    out.set(payload, at);
    at += payload.length;
  }
  return { n, buf };
}

/** A packed batch as the Worker reads it. */
export class PackedReader {
  readonly n: number;
  readonly #words: Int32Array;
  readonly #bytes: Uint8Array;
  /** Where each call's topic starts in the buffer. */
  readonly #at: Int32Array;

  constructor({ n, buf }: PackedCalls) {
    this.n = n;
    this.#words = new Int32Array(buf, 0, n * 3);
    this.#bytes = new Uint8Array(buf);
    this.#at = new Int32Array(n);
    let at = n * 3 * 4;
    for (let i = 0; i < n; i++) {
      this.#at[i] = at;
      at += this.#words[i * 3 + 1] + this.#words[i * 3 + 2];
    }
  }

  /** Instance of call `i`. */
  inst(i: number): number {
    return this.#words[i * 3];
  }

  /** Bytes of call `i`'s topic. */
  topicLength(i: number): number {
    return this.#words[i * 3 + 1];
  }

  /** Call `i`'s topic, then its payload, side by side (a view into the buffer). */
  joined(i: number): Uint8Array {
    const at = this.#at[i];
    return this.#bytes.subarray(at, at + this.#words[i * 3 + 1] + this.#words[i * 3 + 2]);
  }
}

/**
 * A batch's outcomes as they come back: per call {@link OUT_FIELDS} numbers
 * in one Float64Array (transferred), and the rare parts (publications, log
 * lines, a fault, kv writes) only for the calls that have any.
 */
export interface PackedOutcomes {
  nums: Float64Array;
  extra: OutcomeExtra[];
}

/** What a call's outcome holds beside its numbers, when it holds anything. */
export interface OutcomeExtra {
  /** Index of the call in the batch. */
  i: number;
  published?: Published[];
  logs?: LogLine[];
  error?: { kind: FaultKind; message: string };
  kv?: KvWrite[];
}

/** Numbers per call in {@link PackedOutcomes.nums}: ran (1, else 0: not run), then the fields below. */
export const OUT_FIELDS = 8;
const O_RAN = 0;
const O_STATUS = 1;
const O_FUEL = 2;
const O_MS = 3;
const O_STARTED = 4;
const O_HELD = 5;
const O_MEMORY = 6;
const O_LOGS_DROPPED = 7;

/** Writes outcome `out` of call `i` into `nums` (and its rare parts into `extra`). */
export function packOutcome(
  nums: Float64Array,
  extra: OutcomeExtra[],
  i: number,
  out: WireOutcome,
): void {
  const o = i * OUT_FIELDS;
  nums[o + O_RAN] = 1;
  nums[o + O_STATUS] = out.status === null ? NaN : out.status;
  nums[o + O_FUEL] = out.fuelUsed;
  nums[o + O_MS] = out.ms;
  nums[o + O_STARTED] = out.startedAt;
  nums[o + O_HELD] = out.heldMs;
  nums[o + O_MEMORY] = out.memoryBytes;
  nums[o + O_LOGS_DROPPED] = out.logsDropped;
  if (out.published.length || out.logs.length || out.error || out.kv) {
    const x: OutcomeExtra = { i };
    if (out.published.length) x.published = out.published;
    if (out.logs.length) x.logs = out.logs;
    if (out.error) x.error = out.error;
    if (out.kv) x.kv = out.kv;
    extra.push(x);
  }
}

/** What an outcome without publications or log lines holds in their place (never written to). */
const NONE = Object.freeze([]) as unknown as never[];

/** The outcomes of a packed batch of `n` calls (null: not run). */
export function unpackOutcomes({ nums, extra }: PackedOutcomes, n: number): (WireOutcome | null)[] {
  const outs = new Array<WireOutcome | null>(n);
  for (let i = 0; i < n; i++) {
    const o = i * OUT_FIELDS;
    if (nums[o + O_RAN] !== 1) {
      outs[i] = null;
      continue;
    }
    const status = nums[o + O_STATUS];
    outs[i] = {
      status: Number.isNaN(status) ? null : status,
      published: NONE,
      logs: NONE,
      fuelUsed: nums[o + O_FUEL],
      ms: nums[o + O_MS],
      startedAt: nums[o + O_STARTED],
      heldMs: nums[o + O_HELD],
      memoryBytes: nums[o + O_MEMORY],
      logsDropped: nums[o + O_LOGS_DROPPED],
    };
  }
  for (const x of extra) {
    const out = outs[x.i];
    if (!out) continue;
    if (x.published) out.published = x.published;
    if (x.logs) out.logs = x.logs;
    if (x.error) out.error = x.error;
    if (x.kv) out.kv = x.kv;
  }
  return outs;
}

/** A call's outcome plus what the runtime's thread keeps for the module's stats. */
export interface WireOutcome extends CallOutcome {
  /** When the call started, as stamped in {@link CALL_START} (ms, see {@link clockMs}). */
  startedAt: number;
  /** How long the call held its Worker, a fresh instance's initialisers included (ms). */
  heldMs: number;
  /** Linear memory of the instance after the call. */
  memoryBytes: number;
  /** Log lines the instance's rate limit dropped, over the life of its slot. */
  logsDropped: number;
  /** Wall time of the guest call in milliseconds. */
  ms: number;
  /**
   * kv writes to commit with the call's other effects: on a module's last
   * successful call of a batch, the writes of all its successful calls of the
   * batch, the last value per key (the runtime commits a batch's effects in
   * one group transaction).
   */
  kv?: KvWrite[];
}

/** A module log line that passed the rate limit, for the device log. */
export interface SinkLine {
  module: string;
  level: number;
  line: string;
}

/** Runtime → Worker. */
export type ToWorker =
  | {
    t: "init";
    sab: SharedArrayBuffer;
    logRate: LogRate;
    threadShare: ThreadShare;
    epoch: number;
  }
  | {
    t: "load";
    req: number;
    inst: number;
    module: RunnableModule;
    /** The module's kv usage as the runtime knows it (used unless this Worker tracks it already). */
    kvUsage: number;
  }
  | { t: "unload"; req: number; inst: number }
  | { t: "run"; req: number; calls: PackedCalls }
  /** Connects the Worker to the inference engine (before its first module granted `nn` loads). */
  | ({ t: "nn" } & NnLinkInit);

/** Worker → runtime. */
export type FromWorker =
  | {
    t: "loaded";
    req: number;
    memoryBytes: number;
    sink: SinkLine[];
    error?: { kind: FaultKind; message: string };
    /** kv writes of the initialisers. */
    kv?: KvWrite[];
  }
  | {
    t: "ran";
    req: number;
    /**
     * One per call, in order; not run (null once unpacked) for a call whose
     * instance faulted earlier in the batch.
     */
    outcomes: PackedOutcomes;
    sink: SinkLine[];
  }
  | { t: "unloaded"; req: number; sink: SinkLine[] }
  | RpcRequest;

/** A synchronous call from a Worker; the answer comes through the shared buffer. */
export type RpcRequest =
  | { t: "rpc"; seq: number; inst: number; op: "kv_get"; key: Uint8Array }
  | { t: "rpc"; seq: number; inst: number; op: "sensor"; path: string; cap: number };

/**
 * Shared buffer layout: Int32 words `[0]` the answered request's sequence
 * number, `[1]` the answer (a byte count, or a negative `EdgeError` code),
 * `[2]` and `[3]` the call the Worker runs (for the wall-clock guard), `[4]`
 * what serving the request cost the runtime's thread, then the answer's bytes
 * from {@link RPC_DATA_OFFSET}. The buffer grows (it is a growable
 * SharedArrayBuffer) when a kv value needs more room.
 */
export const RPC_SEQ = 0;
/** Index of the answer word. */
export const RPC_RESULT = 1;
/**
 * Index of the word holding the instance whose guest code the Worker runs now
 * (0: none), for the runtime's wall-clock guard; {@link CALL_START} says since
 * when.
 */
export const CALL_INST = 2;
/** Index of the word holding when the current guest call started ({@link clockMs}). */
export const CALL_START = 3;

/**
 * Milliseconds since `epoch` (the runtime's, sent in `init`), as an Int32 that
 * wraps after 24 days: both threads read the same clock
 * (`performance.timeOrigin + performance.now()`), and differences of two
 * stamps are taken with `| 0`, so the wrap does not matter. `now` is a
 * `performance.now()` the caller already took.
 */
export function clockMs(epoch: number, now = performance.now()): number {
  return (performance.timeOrigin + now - epoch) | 0;
}
/**
 * Index of the word holding what serving the answered request cost the
 * runtime's thread, in microseconds ({@link RPC_DISPATCH_US} included).
 */
export const RPC_COST_US = 4;
/** Int32 words of the control area. */
export const CTRL_WORDS = 8;
/** Where the answer's bytes start. */
export const RPC_DATA_OFFSET = CTRL_WORDS * 4;
/** What receiving and dispatching one request's message costs the runtime's thread (µs). */
export const RPC_DISPATCH_US = 10;
/** Initial size of the shared buffer. */
export const RPC_INITIAL_BYTES = RPC_DATA_OFFSET + 65536;
/** How long a Worker waits for an answer before it reports an I/O error to the guest. */
export const RPC_TIMEOUT_MS = 10_000;
