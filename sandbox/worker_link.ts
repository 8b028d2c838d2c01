/**
 * A sandbox Worker's side of the buffer it shares with the runtime's thread
 * (its layout is in `pool_protocol.ts`): the synchronous round trips that
 * answer `kv_get` misses and `sensor_read`, each within the module's and the
 * Worker's share of that thread, and the stamps of the running call that the
 * runtime's wall-clock guard reads.
 *
 * @module
 */
import { EdgeError, TokenBucket } from "./host/context.ts";
import {
  CALL_INST,
  CALL_START,
  clockMs,
  CTRL_WORDS,
  type FromWorker,
  RPC_COST_US,
  RPC_DATA_OFFSET,
  RPC_RESULT,
  RPC_SEQ,
  RPC_TIMEOUT_MS,
  type RpcRequest,
  type ThreadShare,
} from "./pool_protocol.ts";

/** A request to the runtime's thread, before it is numbered. */
export type LinkRequest =
  | { inst: number; op: "kv_get"; key: Uint8Array }
  | { inst: number; op: "sensor"; path: string; cap: number };

/** What the runtime's thread answered: a byte count (bytes follow) or a code. */
export interface LinkAnswer {
  code: number;
  bytes: Uint8Array;
}

/** The Worker's end of the shared buffer, made from the pool's `init` message. */
export class RuntimeLink {
  readonly #sab: SharedArrayBuffer;
  readonly #ctrl: Int32Array;
  readonly #epoch: number;
  readonly #post: (msg: FromWorker) => void;
  /** The share of the runtime's thread all this Worker's modules' round trips may take (ms). */
  readonly #workerThread: TokenBucket;
  #seq = 0;

  /** The link over `sab`, posting requests with `post`. */
  constructor(
    init: { sab: SharedArrayBuffer; epoch: number; threadShare: ThreadShare },
    post: (msg: FromWorker) => void,
  ) {
    this.#sab = init.sab;
    this.#ctrl = new Int32Array(init.sab, 0, CTRL_WORDS);
    this.#epoch = init.epoch;
    this.#post = post;
    const perSecond = init.threadShare.workerMsPerSecond;
    this.#workerThread = new TokenBucket(perSecond, perSecond);
  }

  /**
   * Asks the runtime's thread and waits for the answer: a byte count (bytes
   * follow) or a code. What serving it cost that thread (it measures and says)
   * is spent from the module's and the Worker's share of it (`share`); while
   * either is used up, the call is not made and answers QUOTA, so whatever a
   * module does, its kv and sensor calls take a bounded part of the thread that
   * serves ingest. (The cost, not the round trip: time the request waits in the
   * runtime's queue is not work done for it.)
   */
  ask(request: LinkRequest, share: TokenBucket): LinkAnswer {
    const req = { t: "rpc", seq: ++this.#seq, ...request } as RpcRequest;
    if (!share.available() || !this.#workerThread.available()) {
      return { code: EdgeError.QUOTA, bytes: new Uint8Array(0) };
    }
    const answer = this.#roundTrip(req);
    const ms = Atomics.load(this.#ctrl, RPC_COST_US) / 1000;
    share.spend(ms);
    this.#workerThread.spend(ms);
    return answer;
  }

  #roundTrip(req: RpcRequest): LinkAnswer {
    const ctrl = this.#ctrl;
    this.#post(req);
    const deadline = performance.now() + RPC_TIMEOUT_MS;
    for (;;) {
      const answered = Atomics.load(ctrl, RPC_SEQ);
      if (answered === req.seq) break;
      const left = deadline - performance.now();
      if (left <= 0) return { code: EdgeError.IO, bytes: new Uint8Array(0) };
      Atomics.wait(ctrl, RPC_SEQ, answered, left);
    }
    const code = Atomics.load(ctrl, RPC_RESULT);
    return {
      code,
      bytes: code > 0 ? new Uint8Array(this.#sab, RPC_DATA_OFFSET, code) : new Uint8Array(0),
    };
  }

  /**
   * Stamps the start of instance `inst`'s call (at `performance.now()` `now`)
   * for the wall-clock guard; returns the stamp.
   */
  callStarted(inst: number, now: number): number {
    const startedAt = clockMs(this.#epoch, now);
    Atomics.store(this.#ctrl, CALL_START, startedAt);
    Atomics.store(this.#ctrl, CALL_INST, inst);
    return startedAt;
  }

  /** Milliseconds from the stamp `startedAt` to `performance.now()` `now`. */
  heldSince(startedAt: number, now: number): number {
    return (clockMs(this.#epoch, now) - startedAt) | 0;
  }

  /** No call runs any more: the guard has nothing to watch. */
  callEnded(): void {
    Atomics.store(this.#ctrl, CALL_INST, 0);
  }
}
