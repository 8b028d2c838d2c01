/**
 * The sandbox Worker's end of a channel (`channel.ts`): one synchronous
 * request at a time, with a deadline.
 *
 * @module
 */

import { NnErrno, type NnErrnoValue } from "./abi.ts";
import {
  type ChannelAnswer,
  type ChannelRequest,
  ENGINE_DOWN,
  readMessage,
  REQ_LEN,
  REQ_SEQ,
  RESP_LEN,
  RESP_SEQ,
  RESP_STATUS,
  writeMessage,
} from "./channel.ts";

/** Longest a waiting guest goes without checking whether the engine died. */
const DOWN_CHECK_MS = 100;

/** What the runtime sends a sandbox Worker to connect it to the engine. */
export interface NnLinkInit {
  sab: SharedArrayBuffer;
  /** Longest a guest waits for one `compute` (and `load_by_name`). */
  deadlineMs: number;
  /** Fuel charged per millisecond the engine computes. */
  fuelPerMs: number;
}

/** The outcome of one request. */
export interface LinkAnswer {
  status: NnErrnoValue;
  answer: ChannelAnswer;
  /** The answer's tensor bytes (a view of the shared buffer: copy before the next request). */
  blobs: Uint8Array;
  /** Milliseconds waited. */
  waitedMs: number;
}

/** A sandbox Worker's connection to the engine. */
export class NnLink {
  readonly sab: SharedArrayBuffer;
  readonly deadlineMs: number;
  readonly fuelPerMs: number;
  readonly #ctrl: Int32Array;
  #seq = 0;

  constructor(init: NnLinkInit) {
    this.sab = init.sab;
    this.deadlineMs = init.deadlineMs;
    this.fuelPerMs = init.fuelPerMs;
    this.#ctrl = new Int32Array(init.sab, 0, 8);
    this.#seq = Atomics.load(this.#ctrl, REQ_SEQ);
  }

  /**
   * Sends `req` with `blobs` and waits for the answer until `deadlineMs`.
   * Answers `busy` at once while an earlier request that timed out is still
   * being worked on.
   */
  request(req: ChannelRequest, blobs: Uint8Array[] = []): LinkAnswer {
    const ctrl = this.#ctrl;
    const error = (status: NnErrnoValue, message: string, waitedMs = 0): LinkAnswer => ({
      status,
      answer: { op: "error", message },
      blobs: new Uint8Array(0),
      waitedMs,
    });
    if (Atomics.load(ctrl, ENGINE_DOWN) !== 0) {
      return error(NnErrno.BUSY, "the inference engine is restarting after a crash");
    }
    if (Atomics.load(ctrl, RESP_SEQ) !== this.#seq) {
      return error(NnErrno.BUSY, "the engine is still working on an earlier call that timed out");
    }
    const len = writeMessage(this.sab, req, blobs);
    if (len < 0) return error(NnErrno.TOO_LARGE, "the request exceeds the channel's size");
    const seq = (this.#seq + 1) | 0;
    this.#seq = seq;
    Atomics.store(ctrl, REQ_LEN, len);
    Atomics.store(ctrl, REQ_SEQ, seq);
    Atomics.notify(ctrl, REQ_SEQ);
    const t0 = performance.now();
    const deadline = t0 + this.deadlineMs;
    for (;;) {
      const answered = Atomics.load(ctrl, RESP_SEQ);
      if (answered === seq) break;
      if (Atomics.load(ctrl, ENGINE_DOWN) !== 0) {
        return error(
          NnErrno.RUNTIME_ERROR,
          "the inference engine stopped during this call (it crashed; it restarts)",
          performance.now() - t0,
        );
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        return error(
          NnErrno.RUNTIME_ERROR,
          `no answer within the deadline of ${this.deadlineMs} ms (nn.deadline_ms)`,
          performance.now() - t0,
        );
      }
      // In slices: a crash marked between the check above and this wait must not go unseen.
      Atomics.wait(ctrl, RESP_SEQ, answered, Math.min(left, DOWN_CHECK_MS));
    }
    const waitedMs = performance.now() - t0;
    const status = Atomics.load(ctrl, RESP_STATUS) as NnErrnoValue;
    const { header, blobs: area } = readMessage<ChannelAnswer>(
      this.sab,
      Atomics.load(ctrl, RESP_LEN),
    );
    return { status, answer: header, blobs: area, waitedMs };
  }
}
