/**
 * The Modbus adapter: polls one device's points on one connection, feeds the
 * values to the reading log through the framework's sink, writes `writable`
 * points, and reconnects with back-off and jitter when the connection goes.
 *
 * Failures never end it: a timeout or an exception response is an error of
 * the points it concerned (the others keep their values); a lost connection
 * or a poll in which nothing answered is an error of the adapter, which
 * reconnects. Readings the log refuses (full) wait in a bounded buffer and
 * are offered again at the next poll; past the bound the oldest are dropped
 * and counted.
 *
 * @module
 */
import {
  type ModbusAdapterConfig,
  type ModbusPointConfig,
  type ModbusTarget,
  parseModbusUrl,
} from "../../runtime/mod.ts";
import {
  type Adapter,
  AdapterError,
  type AdapterErrorKind,
  type AdapterEvent,
  type AdapterReading,
  type AdapterSink,
  type AdapterState,
  type AdapterStatus,
  type PointStatus,
  type PointValue,
} from "../adapters/mod.ts";
import { backoffDelay } from "../mqtt/mod.ts";
import {
  ModbusBusyError,
  ModbusClient,
  ModbusConnectionError,
  ModbusTimeoutError,
} from "./client.ts";
import { decodeValue, EncodeError, encodeValue, type Encoding, REGISTERS } from "./codec.ts";
import {
  checkWriteResponse,
  ModbusException,
  ModbusProtocolError,
  parseReadResponse,
  readRequest,
  writeCoilRequest,
  writeRegisterRequest,
  writeRegistersRequest,
} from "./pdu.ts";
import { planReads, type ReadBlock } from "./plan.ts";
import { describeTarget, openTransport, type Transport } from "./transport.ts";

/** Options of {@linkcode ModbusAdapter} beyond its configuration block. */
export interface ModbusAdapterOptions {
  /** First reconnect delay in ms; doubles with jitter up to `reconnectMaxMs`. @default {500} */
  reconnectMinMs?: number;
  /** Longest reconnect delay in ms. @default {30000} */
  reconnectMaxMs?: number;
  /** Opens the byte stream (tests wrap it). @default {openTransport} */
  connect?: (target: ModbusTarget, signal: AbortSignal) => Promise<Transport>;
}

interface Point {
  config: ModbusPointConfig;
  encoding: Encoding;
  status: PointStatus;
}

type ErrorRecord = NonNullable<AdapterStatus["last_error"]>;

/** Classifies a failure of a Modbus operation; the message keeps the protocol's name for it. */
export function toAdapterError(err: unknown): AdapterError {
  if (err instanceof AdapterError) return err;
  const e = err as Error;
  const kind: AdapterErrorKind = err instanceof ModbusException
    ? "exception"
    : err instanceof ModbusTimeoutError
    ? "timeout"
    : err instanceof ModbusBusyError
    ? "busy"
    : err instanceof ModbusProtocolError
    ? "decode"
    : err instanceof EncodeError
    ? "invalid_value"
    : "connection";
  return new AdapterError(kind, e?.message ?? String(err), { cause: err });
}

/** Resolves after `ms`, or at once when `signal` aborts; leaves no listener behind. */
const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal.addEventListener("abort", done, { once: true });
  });

/**
 * One `[[adapters.modbus]]` block at work.
 *
 * @example
 * ```ts ignore
 * const adapter = new ModbusAdapter(config.adapters.modbus[0]);
 * await adapter.start({ ingest: (r) => readings.append(...), signal });
 * await adapter.write("valve", true);
 * ```
 */
export class ModbusAdapter implements Adapter {
  readonly name: string;
  readonly kind = "modbus";
  observe?: (event: AdapterEvent) => void;

  #cfg: ModbusAdapterConfig;
  #target: ModbusTarget;
  #opts: Required<ModbusAdapterOptions>;
  #points: Point[];
  #byMetric = new Map<string, Point>();
  #blocks: ReadBlock[];
  /** Blocks that failed with "illegal data address": read point by point since. */
  #split = new Set<ReadBlock>();
  #state: AdapterState = "stopped";
  #client: ModbusClient | null = null;
  #stopping = new AbortController();
  #loop: Promise<void> | null = null;
  #sink: AdapterSink | null = null;
  #buffer: AdapterReading[] = [];
  #maxBuffered: number;
  #ingesting: Promise<void> | null = null;
  #lastPoll: number | null = null;
  #lastError: ErrorRecord | null = null;
  #readings = 0;
  #errors = 0;
  #reconnects = 0;
  #dropped = 0;

  /** Builds the adapter from its validated block; nothing is opened before {@linkcode start}. */
  constructor(config: ModbusAdapterConfig, options: ModbusAdapterOptions = {}) {
    this.name = config.name;
    this.#cfg = config;
    this.#target = parseModbusUrl(config.url);
    this.#opts = {
      reconnectMinMs: options.reconnectMinMs ?? 500,
      reconnectMaxMs: options.reconnectMaxMs ?? 30_000,
      connect: options.connect ?? openTransport,
    };
    this.#points = config.points.map((p) => {
      const bits = p.table === "coil" || p.table === "discrete";
      const type = p.type ?? (bits ? "bool" : "uint16");
      return {
        config: p,
        encoding: { type, wordOrder: p.word_order, scale: p.scale, offset: p.offset },
        status: {
          metric: p.metric,
          writable: p.writable,
          last_value: null,
          last_time: null,
          last_error: null,
          reads: 0,
          errors: 0,
          writes: 0,
        },
      };
    });
    for (const p of this.#points) this.#byMetric.set(p.config.metric, p);
    this.#blocks = planReads(this.#points.map((p) => ({
      table: p.config.table,
      address: p.config.address,
      span: REGISTERS[p.encoding.type],
    })));
    this.#maxBuffered = Math.min(100_000, Math.max(1000, this.#points.length * 100));
  }

  /** The device id readings are stored under. */
  get deviceId(): string {
    return this.#cfg.device_id ?? this.#cfg.name;
  }

  /** Read requests one poll sends while no block has been split. */
  get requestsPerPoll(): number {
    return this.#blocks.length;
  }

  /** Starts polling in the background; resolves at once. */
  start(sink: AdapterSink): Promise<void> {
    if (this.#loop) throw new Error(`adapter ${this.name} already started`);
    this.#sink = sink;
    this.#state = "connecting";
    sink.signal.addEventListener("abort", () => this.#stopping.abort(), { once: true });
    this.#loop = this.#run();
    return Promise.resolve();
  }

  /** Stops polling, closes the connection and waits for the readings already read to be offered. */
  async stop(): Promise<void> {
    this.#stopping.abort();
    this.#client?.close("adapter stopping");
    await this.#loop;
    if (this.#buffer.length > 0 && !this.#ingesting) this.#ingesting = this.#flush();
    await this.#ingesting;
    this.#state = "stopped";
  }

  /** Writes `value` to the `writable` point `metric`. */
  async write(metric: string, value: PointValue): Promise<void> {
    const p = this.#byMetric.get(metric);
    if (!p) {
      throw new AdapterError("unknown_point", `adapter ${this.name} has no point '${metric}'`);
    }
    if (!p.config.writable) {
      throw new AdapterError("not_writable", `point '${metric}' is not writable`);
    }
    let words: number[];
    try {
      words = encodeValue(value, p.encoding);
    } catch (err) {
      throw toAdapterError(err);
    }
    const client = this.#client;
    if (!client || !client.open) {
      throw new AdapterError("connection", `not connected to ${describeTarget(this.#target)}`);
    }
    const address = p.config.address;
    const pdu = p.config.table === "coil"
      ? writeCoilRequest(address, words[0] === 1)
      : words.length === 1
      ? writeRegisterRequest(address, words[0])
      : writeRegistersRequest(address, words);
    try {
      checkWriteResponse(pdu, await client.request(this.#cfg.unit_id, pdu));
    } catch (err) {
      const e = toAdapterError(err);
      this.#pointError(p, e);
      throw e;
    }
    p.status.writes++;
  }

  /** The current status. */
  status(): AdapterStatus {
    return {
      name: this.name,
      kind: this.kind,
      device_id: this.deviceId,
      state: this.#state,
      endpoint: describeTarget(this.#target),
      last_poll: this.#lastPoll,
      last_error: this.#lastError,
      readings: this.#readings,
      errors: this.#errors,
      reconnects: this.#reconnects,
      dropped: this.#dropped,
      points: this.#points.map((p) => ({ ...p.status })),
    };
  }

  // ------------------------------------------------------------ connection

  async #run(): Promise<void> {
    const signal = this.#stopping.signal;
    let attempt = 0;
    let connectedBefore = false;
    while (!signal.aborted) {
      this.#state = "connecting";
      let client: ModbusClient;
      try {
        const timeout = AbortSignal.timeout(Math.max(1000, this.#cfg.timeout_ms));
        const transport = await this.#opts.connect(
          this.#target,
          AbortSignal.any([signal, timeout]),
        );
        client = new ModbusClient(transport, {
          framing: this.#target.framing,
          timeoutMs: this.#cfg.timeout_ms,
        });
      } catch (err) {
        if (signal.aborted) break;
        const reason = err instanceof DOMException && err.name === "TimeoutError"
          ? "connect timed out"
          : (err as Error).message;
        this.#adapterError(
          "connection",
          `cannot connect to ${describeTarget(this.#target)}: ${reason}`,
        );
        this.#state = "backoff";
        await sleep(this.#delay(attempt++), signal);
        continue;
      }
      if (connectedBefore) this.#reconnects++;
      connectedBefore = true;
      this.#client = client;
      this.#state = "connected";
      const { useful, reason } = await this.#pollLoop(client);
      this.#client = null;
      client.close();
      if (signal.aborted) break;
      this.#adapterError("connection", reason.message);
      if (useful) attempt = 0;
      this.#state = "backoff";
      await sleep(this.#delay(attempt++), signal);
    }
  }

  #delay(attempt: number): number {
    return backoffDelay(attempt, {
      minMs: this.#opts.reconnectMinMs,
      maxMs: this.#opts.reconnectMaxMs,
    });
  }

  /** Polls until the connection ends; says whether anything answered on it. */
  async #pollLoop(client: ModbusClient): Promise<{ useful: boolean; reason: Error }> {
    const signal = this.#stopping.signal;
    // One signal for "stop or connection lost", made once per connection:
    // the sleeps between polls listen to it and remove their listener.
    const wake = new AbortController();
    const onStop = () => wake.abort();
    signal.addEventListener("abort", onStop, { once: true });
    void client.closed.then(() => wake.abort());
    let useful = false;
    let next = performance.now();
    while (!signal.aborted && client.open) {
      const started = performance.now();
      const { answered, failed } = await this.#pollOnce(client);
      const seconds = (performance.now() - started) / 1000;
      if (answered > 0) useful = true;
      if (!client.open) break;
      this.#lastPoll = Date.now();
      this.observe?.({ type: "poll", seconds, ok: failed === 0 });
      if (answered === 0 && failed > 0 && !signal.aborted) {
        // Nothing answered: a dead peer behind a live socket, or a gateway
        // that lost its line. A new connection is the only way to find out.
        client.close(`no response to any of ${failed} requests of a poll`);
        break;
      }
      next += this.#cfg.poll_ms;
      const now = performance.now();
      if (next < now) next = now; // overran: skip the missed ticks, no burst
      await sleep(next - now, wake.signal);
    }
    signal.removeEventListener("abort", onStop);
    return { useful, reason: client.error ?? new Error("stopped") };
  }

  // ------------------------------------------------------------ polling

  async #pollOnce(client: ModbusClient): Promise<{ answered: number; failed: number }> {
    const readings: AdapterReading[] = [];
    let answered = 0;
    let failed = 0;
    for (const block of this.#blocks) {
      if (!client.open || this.#stopping.signal.aborted) break;
      const parts = this.#split.has(block)
        ? block.members.map((m) => this.#single(block, m.index))
        : [block];
      for (const part of parts) {
        if (!client.open) break;
        const outcome = await this.#readBlock(client, part, readings);
        if (outcome === "split") {
          this.#split.add(block);
          for (const m of block.members) {
            if (!client.open) break;
            const one = await this.#readBlock(client, this.#single(block, m.index), readings);
            if (one === "answered") answered++;
            else failed++;
          }
        } else if (outcome === "answered") {
          answered++;
        } else {
          failed++;
        }
      }
    }
    if (readings.length > 0) this.#offer(readings);
    return { answered, failed };
  }

  #single(block: ReadBlock, index: number): ReadBlock {
    const p = this.#points[index];
    return {
      fc: block.fc,
      address: p.config.address,
      quantity: REGISTERS[p.encoding.type],
      members: [{ index, at: 0 }],
    };
  }

  /**
   * Reads one block. "answered" includes exception responses other than a
   * bad address in a multi-point block, which asks for a split instead.
   */
  async #readBlock(
    client: ModbusClient,
    block: ReadBlock,
    out: AdapterReading[],
  ): Promise<"answered" | "failed" | "split"> {
    let words: number[];
    try {
      const pdu = await client.request(
        this.#cfg.unit_id,
        readRequest(block.fc, block.address, block.quantity),
      );
      words = parseReadResponse(block.fc, block.quantity, pdu);
    } catch (err) {
      if (err instanceof ModbusException && err.code === 0x02 && block.members.length > 1) {
        return "split";
      }
      if (err instanceof ModbusConnectionError) return "failed";
      const e = toAdapterError(err);
      for (const m of block.members) this.#pointError(this.#points[m.index], e);
      return err instanceof ModbusException || err instanceof ModbusProtocolError
        ? "answered"
        : "failed";
    }
    const now = Date.now();
    for (const m of block.members) {
      const p = this.#points[m.index];
      const value = decodeValue(words, m.at, p.encoding);
      if (!Number.isFinite(value)) {
        this.#pointError(
          p,
          new AdapterError("decode", `${p.encoding.type} value is ${value}, not a number`),
        );
        continue;
      }
      p.status.reads++;
      p.status.last_value = value;
      p.status.last_time = now;
      p.status.last_error = null;
      out.push({ metric: p.config.metric, value, timestamp: now });
    }
    return "answered";
  }

  // ------------------------------------------------------------ readings

  #offer(readings: AdapterReading[]): void {
    for (const r of readings) this.#buffer.push(r);
    const excess = this.#buffer.length - this.#maxBuffered;
    if (excess > 0) {
      this.#buffer.splice(0, excess);
      this.#dropped += excess;
      this.observe?.({ type: "dropped", count: excess });
    }
    if (!this.#ingesting) this.#ingesting = this.#flush();
  }

  /** Hands the buffer to the sink, one batch at a time; a refusal keeps it for the next poll. */
  async #flush(): Promise<void> {
    try {
      while (this.#buffer.length > 0 && this.#sink) {
        const batch = this.#buffer;
        this.#buffer = [];
        try {
          await this.#sink.ingest(batch);
        } catch (err) {
          this.#buffer = batch.concat(this.#buffer);
          this.#adapterError(
            "full",
            `reading log refused ${batch.length} readings: ${(err as Error).message}`,
          );
          return;
        }
        this.#readings += batch.length;
        this.observe?.({ type: "readings", count: batch.length });
      }
    } finally {
      this.#ingesting = null;
    }
  }

  // ------------------------------------------------------------ errors

  #pointError(p: Point, e: AdapterError): void {
    const rec = { kind: e.kind, message: e.message, time: Date.now() };
    p.status.errors++;
    p.status.last_error = rec;
    this.#errors++;
    this.#lastError = { ...rec, message: `${p.config.metric}: ${e.message}` };
    this.observe?.({ type: "error", kind: e.kind, metric: p.config.metric });
  }

  #adapterError(kind: AdapterErrorKind, message: string): void {
    this.#errors++;
    this.#lastError = { kind, message, time: Date.now() };
    this.observe?.({ type: "error", kind });
  }
}
