/**
 * The shared buffer between one sandbox Worker and the inference engine's
 * Worker. The guest's `load_by_name` and `compute` must be synchronous, and
 * the engine (onnxruntime-web) is asynchronous and too heavy to load into
 * every sandbox Worker, so a sandbox Worker writes a request here, wakes the
 * engine (`Atomics.notify`) and waits (`Atomics.wait`) until the engine has
 * written the answer or the call's deadline has passed. The engine waits on
 * every attached buffer with `Atomics.waitAsync`, so its own thread stays
 * free between calls.
 *
 * One request per buffer is outstanding at a time: a sandbox Worker that gave
 * up waiting (deadline) sends nothing more until the engine has answered the
 * abandoned request, answering `busy` meanwhile, so an old answer can never
 * overwrite a newer request.
 *
 * Message format (both directions): u32 length of a JSON header, the header,
 * zero padding to 8 bytes, then the tensors' bytes, each at the offset (from
 * the start of that area) its header entry names.
 *
 * @module
 */

import type { ElementType } from "./abi.ts";

/** Int32 word: sequence number of the latest request. */
export const REQ_SEQ = 0;
/** Int32 word: sequence number of the latest answered request. */
export const RESP_SEQ = 1;
/** Int32 word: the answer's `nn_errno`. */
export const RESP_STATUS = 2;
/** Int32 word: bytes of the request message. */
export const REQ_LEN = 3;
/** Int32 word: bytes of the answer message. */
export const RESP_LEN = 4;
/**
 * Int32 word: 1 while the engine is down (it died; the runtime's thread
 * restarts it), 0 while it serves this buffer. Set by the runtime's thread
 * only ({@link markEngineDown}, {@link markEngineUp}).
 */
export const ENGINE_DOWN = 5;
/** Where messages start. */
export const DATA_OFFSET = 32;
/** Initial size of a channel buffer. */
export const CHANNEL_INITIAL_BYTES = DATA_OFFSET + 64 * 1024;

/** A tensor as it crosses a channel: element type, dims, and where its bytes are. */
export interface WireTensor {
  type: ElementType;
  dims: number[];
  offset: number;
  length: number;
}

/** One input or output of a model, as recorded at install. */
export interface TensorSpec {
  name: string;
  /** onnxruntime's element type name ("float32", …; others such as "bool" are not exchangeable). */
  type: string;
  /** Dimensions; -1 where the model leaves a dimension open (symbolic). */
  dims: number[];
}

/**
 * The work of one inference, measured when the model was installed: the
 * fastest of a few runs on zero inputs with every open dimension set to 1.
 * `compute` is charged `ms × (input elements / elements)` of it, so the
 * charge follows the work, not the engine's wall time (which a preemption
 * or a GC pause would inflate).
 */
export interface ComputeCost {
  ms: number;
  /** Input elements of the measured runs. */
  elements: number;
}

/** What a model takes and gives. */
export interface ModelInfo {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

/** Requests a sandbox Worker sends. */
export type ChannelRequest =
  | { op: "load"; inst: number; model: string }
  | {
    op: "compute";
    inst: number;
    model: string;
    /** Date.now() after which the engine does not start the computation. */
    deadline: number;
    inputs: WireTensor[];
  };

/** Answers of the engine (with a status in the control words). */
export type ChannelAnswer =
  | {
    op: "load";
    sha256: string;
    info: ModelInfo;
    maxElements: number;
    /** Null when the model could not be measured (then the engine's time is charged). */
    cost: ComputeCost | null;
  }
  | { op: "compute"; sha256: string; ms: number; outputs: WireTensor[] }
  | { op: "error"; message: string; ms?: number };

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * The engine serving `sab` died: a guest waiting in `compute` is woken and
 * answered at once instead of at its deadline, and later calls answer `busy`
 * until {@link markEngineUp}. No message is written: the dead engine's
 * thread may still be finishing, and only it writes answers.
 */
export function markEngineDown(sab: SharedArrayBuffer): void {
  const ctrl = new Int32Array(sab, 0, 8);
  Atomics.store(ctrl, ENGINE_DOWN, 1);
  Atomics.notify(ctrl, RESP_SEQ);
}

/**
 * A new engine is about to serve `sab` (before it attaches): the request the
 * dead engine left unanswered is dropped (its guest got its error already),
 * so the new engine does not run it again.
 */
export function markEngineUp(sab: SharedArrayBuffer): void {
  const ctrl = new Int32Array(sab, 0, 8);
  Atomics.store(ctrl, RESP_SEQ, Atomics.load(ctrl, REQ_SEQ));
  Atomics.store(ctrl, ENGINE_DOWN, 0);
}

/** Bytes a message of `header` and `blobs` takes. */
function layout(header: unknown): { json: Uint8Array; blobAt: number } {
  const json = enc.encode(JSON.stringify(header));
  return { json, blobAt: (4 + json.length + 7) & ~7 };
}

/**
 * Lays out `blobs` for a message: returns the wire tensors' offsets relative
 * to the blob area, in order.
 */
export function blobOffsets(blobs: Uint8Array[]): number[] {
  const out: number[] = [];
  let at = 0;
  for (const b of blobs) {
    out.push(at);
    at += (b.length + 7) & ~7;
  }
  return out;
}

/** Total bytes of blobs laid out by {@link blobOffsets}. */
function blobBytes(blobs: Uint8Array[]): number {
  return blobs.reduce((n, b) => n + ((b.length + 7) & ~7), 0);
}

/**
 * Writes `header` and `blobs` into `sab` from {@link DATA_OFFSET}, growing it
 * when needed. Returns the message length, or -1 when it would exceed the
 * buffer's maximum.
 */
export function writeMessage(sab: SharedArrayBuffer, header: unknown, blobs: Uint8Array[]): number {
  const { json, blobAt } = layout(header);
  const total = blobAt + blobBytes(blobs);
  const need = DATA_OFFSET + total;
  if (need > sab.byteLength) {
    if (need > sab.maxByteLength) return -1;
    sab.grow(Math.min(sab.maxByteLength, Math.max(need, sab.byteLength * 2)));
  }
  const u8 = new Uint8Array(sab, DATA_OFFSET, total);
  new DataView(sab, DATA_OFFSET, 4).setUint32(0, json.length, true);
  u8.set(json, 4);
  let at = blobAt;
  for (const b of blobs) {
    u8.set(b, at);
    at += (b.length + 7) & ~7;
  }
  return total;
}

/** Reads a message's header and a view of its blob area (valid until the buffer is written again). */
export function readMessage<T>(
  sab: SharedArrayBuffer,
  length: number,
): { header: T; blobs: Uint8Array } {
  if (length < 4 || DATA_OFFSET + length > sab.byteLength) {
    throw new RangeError(`channel message length ${length} is out of range`);
  }
  const jsonLen = new DataView(sab, DATA_OFFSET, 4).getUint32(0, true);
  if (4 + jsonLen > length) {
    throw new RangeError(`channel header length ${jsonLen} is out of range`);
  }
  // TextDecoder refuses views of shared memory: copy the header out.
  const header = JSON.parse(dec.decode(new Uint8Array(sab, DATA_OFFSET + 4, jsonLen).slice())) as T;
  const blobAt = (4 + jsonLen + 7) & ~7;
  return { header, blobs: new Uint8Array(sab, DATA_OFFSET + blobAt, Math.max(0, length - blobAt)) };
}

/** The bytes of `t` within a blob area, or null when they fall outside it. */
export function tensorBytes(blobs: Uint8Array, t: WireTensor): Uint8Array | null {
  if (!Number.isInteger(t.offset) || !Number.isInteger(t.length) || t.offset < 0 || t.length < 0) {
    return null;
  }
  if (t.offset + t.length > blobs.length) return null;
  return blobs.subarray(t.offset, t.offset + t.length);
}
