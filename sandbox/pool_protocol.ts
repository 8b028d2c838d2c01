/**
 * The messages between the runtime's thread ({@link WorkerPool} in
 * `pool.ts`) and a sandbox Worker (`worker.ts`), and the layout of the shared
 * buffer through which a Worker makes its few synchronous calls into the
 * runtime (kv and sensor reads: the Worker itself has no permissions).
 *
 * @module
 */

import type { FaultKind } from "./errors.ts";
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
  | { t: "run"; req: number; calls: WireCall[] }
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
    /** One per call, in order; null for a call not run because its instance faulted earlier in the batch. */
    outcomes: (WireOutcome | null)[];
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
 * stamps are taken with `| 0`, so the wrap does not matter.
 */
export function clockMs(epoch: number): number {
  return (performance.timeOrigin + performance.now() - epoch) | 0;
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
