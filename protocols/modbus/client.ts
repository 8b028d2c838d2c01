/**
 * A Modbus client on one connection: one request on the wire at a time (what
 * serial lines require and what most devices and gateways handle best),
 * each with a response timeout.
 *
 * After a timeout a late response must never be taken for the next one's:
 * over TCP the MBAP transaction id tells them apart; RTU has no id, so the
 * client keeps the line to itself for one more timeout, discarding what
 * arrives, and then until it has been quiet (serial line guide 2.5.1.1:
 * frames are delimited by silence) before it sends again. Only an answer
 * later than twice the timeout could still be mistaken; a device that slow
 * needs a longer `timeout_ms`.
 *
 * @module
 */
import { encodeFrame, type Frame, FrameDecoder, type Framing } from "./frame.ts";
import { ModbusProtocolError } from "./pdu.ts";
import type { Transport } from "./transport.ts";

/** No response within the timeout. */
export class ModbusTimeoutError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "ModbusTimeoutError";
  }
}

/** The connection is gone (closed, reset, refused) or was never there. */
export class ModbusConnectionError extends Error {
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ModbusConnectionError";
  }
}

/** More requests wait than the client queues. */
export class ModbusBusyError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "ModbusBusyError";
  }
}

/** Options of {@linkcode ModbusClient}. */
export interface ClientOptions {
  framing: Framing;
  /** Milliseconds to wait for each response. */
  timeoutMs: number;
  /** Requests that may wait behind the one on the wire. @default {64} */
  maxQueued?: number;
}

interface Pending {
  transactionId: number;
  unitId: number;
  /** performance.now() past which it has timed out. */
  deadline: number;
  resolve: (pdu: Uint8Array) => void;
  reject: (err: Error) => void;
}

/**
 * Sends request PDUs and resolves with response PDUs (exception responses
 * included: the caller's parser turns those into `ModbusException`).
 *
 * @example
 * ```ts ignore
 * const t = await openTransport(parseModbusUrl("tcp://127.0.0.1:5020"), AbortSignal.timeout(1000));
 * const client = new ModbusClient(t, { framing: "tcp", timeoutMs: 500 });
 * const pdu = await client.request(1, readRequest(0x03, 0, 2));
 * parseReadResponse(0x03, 2, pdu); // [register 0, register 1]
 * client.close();
 * ```
 */
export class ModbusClient {
  #t: Transport;
  #framing: Framing;
  #timeoutMs: number;
  #maxQueued: number;
  #decoder: FrameDecoder;
  #transactionId = 0;
  #pending: Pending | null = null;
  #tail: Promise<unknown> = Promise.resolve();
  #queued = 0;
  #error: Error | null = null;
  #lastByteAt = 0;
  #mustWaitQuiet = false;
  /** RTU: nothing is sent before this time (a timed-out answer may still come). */
  #holdUntil = 0;
  /**
   * One timer for the response timeouts, re-armed lazily: a request that is
   * answered leaves it running, and when it fires it only times out the
   * request on the wire if that one's deadline has passed. A timer per
   * request cost about a quarter of the client's CPU per request.
   */
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = Promise.withResolvers<Error>();

  /** Takes over `transport` and starts reading from it. */
  constructor(transport: Transport, options: ClientOptions) {
    const { framing, timeoutMs, maxQueued = 64 } = options;
    if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs must be > 0, got ${timeoutMs}`);
    this.#t = transport;
    this.#framing = framing;
    this.#timeoutMs = timeoutMs;
    this.#maxQueued = maxQueued;
    this.#decoder = new FrameDecoder(framing);
    void this.#readLoop();
  }

  /** Resolves with the reason once the connection has ended. */
  get closed(): Promise<Error> {
    return this.#closed.promise;
  }

  /** Why the connection ended, or null while it is open. */
  get error(): Error | null {
    return this.#error;
  }

  /** Whether the connection is still usable. */
  get open(): boolean {
    return this.#error === null;
  }

  /**
   * Sends `pdu` to `unitId` once the requests before it are answered, and
   * resolves with the response PDU. Rejects with {@linkcode ModbusTimeoutError},
   * {@linkcode ModbusConnectionError}, {@linkcode ModbusBusyError} or
   * `ModbusProtocolError`.
   */
  request(unitId: number, pdu: Uint8Array): Promise<Uint8Array> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#queued >= this.#maxQueued) {
      return Promise.reject(new ModbusBusyError(`${this.#queued} requests already wait`));
    }
    this.#queued++;
    const run = this.#tail.then(() => this.#exchange(unitId, pdu)).finally(() => this.#queued--);
    this.#tail = run.catch(() => {});
    return run;
  }

  /** Closes the connection; waiting requests reject. */
  close(reason = "closed"): void {
    this.#fail(new ModbusConnectionError(reason));
  }

  async #exchange(unitId: number, pdu: Uint8Array): Promise<Uint8Array> {
    if (this.#error) throw this.#error;
    if (this.#framing === "rtu") await this.#waitQuiet();
    if (this.#error) throw this.#error;
    this.#transactionId = (this.#transactionId + 1) & 0xffff;
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
    // It may be rejected (a close, a timeout) while the write is still under way.
    promise.catch(() => {});
    const pending: Pending = {
      transactionId: this.#transactionId,
      unitId,
      deadline: performance.now() + this.#timeoutMs,
      resolve,
      reject,
    };
    this.#pending = pending;
    this.#timer ??= setTimeout(this.#onTimer, this.#timeoutMs);
    try {
      try {
        await this.#t.write(encodeFrame(this.#framing, unitId, pdu, this.#transactionId));
      } catch (err) {
        this.#fail(
          new ModbusConnectionError(`send failed: ${(err as Error).message}`, {
            cause: err,
          }),
        );
      }
      return await promise;
    } finally {
      if (this.#pending === pending) this.#pending = null;
    }
  }

  #onTimer = (): void => {
    this.#timer = undefined;
    const p = this.#pending;
    if (!p || this.#error) return;
    const now = performance.now();
    if (now < p.deadline) {
      this.#timer = setTimeout(this.#onTimer, p.deadline - now);
      return;
    }
    this.#pending = null;
    this.#mustWaitQuiet = true;
    this.#holdUntil = now + this.#timeoutMs;
    p.reject(new ModbusTimeoutError(`no response within ${this.#timeoutMs} ms`));
  };

  /**
   * RTU: drops stray bytes and waits until the hold after a timeout is over
   * and the line has been silent for `quietMs`.
   */
  async #waitQuiet(): Promise<void> {
    if (!this.#mustWaitQuiet && this.#decoder.buffered === 0) return;
    while (!this.#error) {
      const now = performance.now();
      const left = Math.max(this.#lastByteAt + this.#t.quietMs, this.#holdUntil) - now;
      if (left <= 0) break;
      await new Promise((r) => setTimeout(r, left));
    }
    this.#decoder.reset();
    this.#mustWaitQuiet = false;
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(256);
    while (!this.#error) {
      let n: number | null;
      try {
        n = await this.#t.read(buf);
      } catch (err) {
        this.#fail(
          new ModbusConnectionError(`receive failed: ${(err as Error).message}`, {
            cause: err,
          }),
        );
        return;
      }
      if (n === null) {
        this.#fail(new ModbusConnectionError("connection closed by the device"));
        return;
      }
      this.#lastByteAt = performance.now();
      try {
        this.#decoder.push(buf.subarray(0, n));
        for (let f = this.#decoder.next(); f !== null; f = this.#decoder.next()) this.#dispatch(f);
      } catch (err) {
        this.#onBadFrame(err as Error);
      }
    }
  }

  #dispatch(f: Frame): void {
    const p = this.#pending;
    // Late answers to timed-out requests, or another unit's on a shared line.
    if (!p || f.unitId !== p.unitId && this.#framing === "rtu") return;
    if (this.#framing === "tcp" && f.transactionId !== p.transactionId) return;
    this.#pending = null;
    if (f.unitId !== p.unitId) {
      p.reject(new ModbusProtocolError(`response from unit ${f.unitId}, asked unit ${p.unitId}`));
    } else {
      p.resolve(f.pdu);
    }
  }

  /**
   * A stream that is not a frame: over TCP the framing is lost for good, so
   * the connection goes; on an RTU line it is noise, so the pending request
   * fails and the line must fall quiet before the next one.
   */
  #onBadFrame(err: Error): void {
    if (this.#framing === "tcp") {
      this.#fail(new ModbusConnectionError(`dropped: ${err.message}`, { cause: err }));
      return;
    }
    this.#decoder.reset();
    this.#mustWaitQuiet = true;
    const p = this.#pending;
    this.#pending = null;
    p?.reject(err);
  }

  #fail(err: Error): void {
    if (this.#error) return;
    this.#error = err;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#t.close();
    const p = this.#pending;
    this.#pending = null;
    p?.reject(err);
    this.#closed.resolve(err);
  }
}
