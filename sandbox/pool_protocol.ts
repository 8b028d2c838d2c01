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

/** Module log lines per second and burst that reach the device log. */
export interface LogRate {
  perSecond: number;
  burst: number;
}

/** One message for one instance. */
export interface WireCall {
  inst: number;
  topic: string;
  payload: Uint8Array;
}

/** A call's outcome plus what the runtime's thread keeps for the module's stats. */
export interface WireOutcome extends CallOutcome {
  /** Linear memory of the instance after the call. */
  memoryBytes: number;
  /** Log lines the instance's rate limit dropped, over the life of its slot. */
  logsDropped: number;
  /** Wall time of the guest call in milliseconds. */
  ms: number;
}

/** A module log line that passed the rate limit, for the device log. */
export interface SinkLine {
  module: string;
  level: number;
  line: string;
}

/** Runtime → Worker. */
export type ToWorker =
  | { t: "init"; sab: SharedArrayBuffer; logRate: LogRate }
  | { t: "load"; req: number; inst: number; module: RunnableModule }
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
  | { t: "rpc"; seq: number; inst: number; op: "kv_set"; key: Uint8Array; value: Uint8Array }
  | { t: "rpc"; seq: number; inst: number; op: "sensor"; path: string; cap: number };

/**
 * Shared buffer layout: Int32 words `[0]` the answered request's sequence
 * number, `[1]` the answer (a byte count, or a negative `EdgeError` code),
 * then the answer's bytes from {@link RPC_DATA_OFFSET}. The buffer grows (it
 * is a growable SharedArrayBuffer) when a kv value needs more room.
 */
export const RPC_SEQ = 0;
/** Index of the answer word. */
export const RPC_RESULT = 1;
/** Where the answer's bytes start. */
export const RPC_DATA_OFFSET = 16;
/** Initial size of the shared buffer. */
export const RPC_INITIAL_BYTES = RPC_DATA_OFFSET + 65536;
/** How long a Worker waits for an answer before it reports an I/O error to the guest. */
export const RPC_TIMEOUT_MS = 10_000;
