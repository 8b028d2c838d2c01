/**
 * The Worker pool: a few Workers started with `deno.permissions: "none"`,
 * each holding many module instances (see `worker.ts`). The runtime's thread
 * keeps every privilege: it answers the Workers' kv reads and sensor calls,
 * checking them against the manifest of the instance that asked, not against
 * anything the Worker says about itself; kv writes come back with each call's
 * outcome and are checked again when the module host commits them.
 *
 * @module
 */

import { workerEntry } from "../lib/mod.ts";
import { ModuleFault, WorkerGoneError } from "./errors.ts";
import { EdgeError } from "./host/context.ts";
import { globMatcher, MAX_SENSOR_BYTES, type PathMatcher, readGrantedSensor } from "./host/edge.ts";
import type { RunnableModule } from "./instance.ts";
import type { KvStore, KvWrite } from "./kv.ts";
import type { Manifest } from "./manifest.ts";
import { CEILINGS } from "./manifest_limits.ts";
import type { NnPoolLink } from "./nn/service.ts";
import {
  CALL_INST,
  CALL_START,
  clockMs,
  CTRL_WORDS,
  type FromWorker,
  type LogRate,
  packCalls,
  RPC_COST_US,
  RPC_DATA_OFFSET,
  RPC_DISPATCH_US,
  RPC_INITIAL_BYTES,
  RPC_RESULT,
  RPC_SEQ,
  type RpcRequest,
  type SinkLine,
  type ThreadShare,
  type ToWorker,
  unpackOutcomes,
  type WireCall,
  type WireOutcome,
} from "./pool_protocol.ts";

/** What the pool needs from the runtime. */
export interface PoolOptions {
  /** Number of Workers. */
  size: number;
  /** Answers the Workers' kv reads (their writes come back with the outcomes). */
  kv: Pick<KvStore, "get" | "usage">;
  logRate: LogRate;
  /** The share of the runtime's thread the Workers' kv and sensor calls may take. */
  threadShare: ThreadShare;
  /** Module log lines that passed the rate limit, for the device log. */
  onSink(lines: SinkLine[]): void;
  /** A Worker died (a bug of ours, not a guest fault): its instances are gone. */
  onCrash(lane: number, error: string): void;
  /** The inference engine, for modules granted `nn` (`nn/service.ts`). */
  nn?: NnPoolLink;
  /** The wall-clock deadline of one call of a module with `manifest` (ms). */
  deadlineMs(manifest: Manifest): number;
  /**
   * A call of instance `inst` held Worker `lane` past its deadline: reported once
   * per call, while it still runs (`running`) or when its outcome comes back.
   */
  onOverrun(lane: number, inst: number, heldMs: number, running: boolean): void;
}

/** How often the wall-clock guard looks at the Workers that have work out. */
const GUARD_INTERVAL_MS = 10;

interface Lane {
  worker: Worker;
  sab: SharedArrayBuffer;
  ctrl: Int32Array;
  pending: Map<number, (msg: FromWorker | WorkerGoneError) => void>;
}

interface InstanceInfo {
  lane: number;
  manifest: Manifest;
  /** Its calls' wall-clock deadline (ms). */
  deadlineMs: number;
  sensorGrants: PathMatcher[];
  /** Its kv and sensor calls are refused from now on (the module was removed). */
  revoked: boolean;
}

const WORKER_URL = workerEntry("sandbox/worker.ts");

/** The pool; {@link WorkerPool.terminate} stops every Worker. */
export class WorkerPool {
  readonly #opts: PoolOptions;
  readonly #lanes: (Lane | undefined)[];
  readonly #insts = new Map<number, InstanceInfo>();
  #nextInst = 1;
  #nextReq = 1;
  #terminated = false;
  /** The clock the Workers stamp their calls with (see `clockMs`). */
  readonly #epoch = performance.timeOrigin + performance.now();
  #guard: ReturnType<typeof setInterval> | undefined;
  /** Calls reported as overruns while running: `${lane}:${inst}:${startedAt}`. */
  readonly #overran = new Set<string>();

  constructor(options: PoolOptions) {
    if (!Number.isInteger(options.size) || options.size < 1) {
      throw new RangeError(`worker pool size must be a positive integer, got ${options.size}`);
    }
    this.#opts = options;
    // Each Worker starts on first use (and again after a crash).
    this.#lanes = new Array<Lane | undefined>(options.size).fill(undefined);
  }

  /** Number of Workers. */
  get size(): number {
    return this.#lanes.length;
  }

  #spawn(lane: number): Lane {
    const worker = new Worker(WORKER_URL, {
      type: "module",
      name: `edged-sandbox-${lane}`,
      deno: { permissions: "none" },
    } as WorkerOptions);
    const sab = new SharedArrayBuffer(RPC_INITIAL_BYTES, {
      maxByteLength: RPC_DATA_OFFSET + CEILINGS.kvMaxValueBytes,
    });
    const l: Lane = { worker, sab, ctrl: new Int32Array(sab, 0, CTRL_WORDS), pending: new Map() };
    worker.onmessage = (e: MessageEvent<FromWorker>) => {
      try {
        this.#receive(l, e.data);
      } catch (err) {
        this.#lost(lane, l, `sent a malformed message (${err})`);
      }
    };
    worker.onerror = (e) => {
      e.preventDefault(); // a Worker's error must not take the runtime down
      this.#lost(lane, l, `crashed: ${e.message}`);
    };
    worker.onmessageerror = () => this.#lost(lane, l, "sent a message that could not be read");
    this.#send(l, {
      t: "init",
      sab,
      logRate: this.#opts.logRate,
      threadShare: this.#opts.threadShare,
      epoch: this.#epoch,
    });
    return l;
  }

  #send(l: Lane, msg: ToWorker): void {
    if (msg.t === "run") l.worker.postMessage(msg, [msg.calls.buf]);
    else l.worker.postMessage(msg);
  }

  /**
   * Worker `lane` (`l`) answered something it never sends: a bug of ours, and
   * what it holds can no longer be trusted (its kv cache already counts the
   * writes of a batch whose answer, unread, commits nothing). It is replaced
   * like a crashed one; the error is what the caller throws.
   */
  #malformed(lane: number, l: Lane, err: unknown): WorkerGoneError {
    const why = `sent a malformed answer (${err instanceof Error ? err.message : err})`;
    this.#lost(lane, l, why);
    return new WorkerGoneError(lane, why);
  }

  #lost(lane: number, l: Lane, why: string): void {
    if (this.#lanes[lane] !== l) return;
    l.worker.terminate();
    this.#lanes[lane] = undefined;
    for (const [id, info] of this.#insts) {
      if (info.lane !== lane) continue;
      this.#insts.delete(id);
      this.#opts.nn?.release(id);
    }
    this.#opts.nn?.laneGone(lane);
    for (const key of this.#overran) if (key.startsWith(`${lane}:`)) this.#overran.delete(key);
    const gone = new WorkerGoneError(lane, why);
    for (const settle of l.pending.values()) settle(gone);
    l.pending.clear();
    if (!this.#terminated) this.#opts.onCrash(lane, why);
  }

  #lane(lane: number): Lane {
    if (this.#terminated) throw new WorkerGoneError(lane, "is stopped");
    let l = this.#lanes[lane];
    if (!l) l = this.#lanes[lane] = this.#spawn(lane);
    return l;
  }

  #request(lane: number, make: (req: number) => ToWorker): Promise<FromWorker> {
    const l = this.#lane(lane);
    const req = this.#nextReq++;
    this.#startGuard();
    return new Promise((resolve, reject) => {
      l.pending.set(req, (msg) => msg instanceof WorkerGoneError ? reject(msg) : resolve(msg));
      this.#send(l, make(req));
    });
  }

  /**
   * Instantiates `module` in Worker `lane` and runs its initialisers.
   * @returns the new instance's id and memory.
   * @throws {ModuleFault} when an initialiser faults.
   */
  async load(
    lane: number,
    module: RunnableModule,
  ): Promise<{ inst: number; memoryBytes: number; kv?: KvWrite[] }> {
    const inst = this.#nextInst++;
    const m = module.manifest;
    // Registered first: edge_init may already call kv or sensors.
    this.#insts.set(inst, {
      lane,
      manifest: m,
      deadlineMs: this.#opts.deadlineMs(m),
      sensorGrants: m.grants.sensor.map(globMatcher),
      revoked: false,
    });
    let reply: FromWorker;
    let l: Lane;
    try {
      if (m.grants.nn.length > 0 && this.#opts.nn) {
        // The engine learns the grant (and the Worker its link) before the instance can call.
        const link = await this.#opts.nn.admit(lane, inst, m.grants.nn, m.name);
        if (link) this.#send(this.#lane(lane), { t: "nn", ...link });
      }
      l = this.#lane(lane); // the Worker the request goes to
      reply = await this.#request(lane, (req) => ({
        t: "load",
        req,
        inst,
        module: { manifest: m, module: module.module },
        kvUsage: m.grants.kv ? this.#opts.kv.usage(m.name) : 0,
      }));
    } catch (err) {
      this.#insts.delete(inst);
      this.#opts.nn?.release(inst);
      throw err;
    }
    if (reply.t !== "loaded") throw this.#malformed(lane, l, `${reply.t} to load`);
    if (reply.error) {
      this.#insts.delete(inst);
      this.#opts.nn?.release(inst);
      throw new ModuleFault(reply.error.kind, reply.error.message);
    }
    return { inst, memoryBytes: reply.memoryBytes, ...(reply.kv ? { kv: reply.kv } : {}) };
  }

  /**
   * Drops an instance after every message sent to it before; resolves once
   * the Worker has (so it no longer runs or caches anything of it). Those messages
   * still get their kv and sensor calls answered (a swap lets them finish on
   * the old version), unless `revoke` (the module is being deleted, with its
   * kv state: nothing may write it again).
   */
  unload(inst: number, { revoke = false }: { revoke?: boolean } = {}): Promise<void> {
    const info = this.#insts.get(inst);
    if (!info) return Promise.resolve();
    if (revoke) {
      info.revoked = true;
      this.#opts.nn?.release(inst); // no more inference either
    }
    if (this.#terminated || !this.#lanes[info.lane]) {
      this.#insts.delete(inst);
      this.#opts.nn?.release(inst);
      return Promise.resolve();
    }
    return this.#request(info.lane, (req) => ({ t: "unload", req, inst }))
      .then(() => {}, () => {}) // the Worker died: #lost dropped its instances already
      .finally(() => {
        this.#insts.delete(inst);
        this.#opts.nn?.release(inst);
      });
  }

  /** Runs `calls` in order in Worker `lane`; one outcome per call (null: not run, see worker.ts). */
  async run(lane: number, calls: WireCall[]): Promise<(WireOutcome | null)[]> {
    const packed = packCalls(calls);
    const l = this.#lane(lane);
    const reply = await this.#request(lane, (req) => ({ t: "run", req, calls: packed }));
    let outcomes: (WireOutcome | null)[];
    try {
      if (reply.t !== "ran") throw new Error(`${reply.t} to run`);
      outcomes = unpackOutcomes(reply.outcomes, calls.length);
    } catch (err) {
      throw this.#malformed(lane, l, err);
    }
    for (let i = 0; i < outcomes.length; i++) {
      const out = outcomes[i];
      if (!out) continue;
      const inst = calls[i].inst;
      // Calls the guard saw running past their deadline were reported then.
      if (this.#overran.size > 0 && this.#overran.delete(`${lane}:${inst}:${out.startedAt}`)) {
        continue;
      }
      const info = this.#insts.get(inst);
      if (info && out.heldMs > info.deadlineMs) {
        this.#opts.onOverrun(lane, inst, out.heldMs, false);
      }
    }
    return outcomes;
  }

  /**
   * The wall-clock guard: while any Worker has work out, every
   * {@link GUARD_INTERVAL_MS} it reads which call each such Worker runs and
   * since when (the Worker stamps them in the shared buffer), and reports a
   * call past its deadline once. It cannot stop the call (a Worker cannot be
   * interrupted inside wasm); the module host moves the module out of the way.
   */
  #startGuard(): void {
    if (this.#guard !== undefined) return;
    const guard = setInterval(() => this.#checkDeadlines(), GUARD_INTERVAL_MS);
    Deno.unrefTimer(guard);
    this.#guard = guard;
  }

  #checkDeadlines(): void {
    let busy = false;
    const now = clockMs(this.#epoch);
    this.#lanes.forEach((l, lane) => {
      if (!l || l.pending.size === 0) return;
      busy = true;
      const inst = Atomics.load(l.ctrl, CALL_INST);
      if (inst === 0) return;
      const startedAt = Atomics.load(l.ctrl, CALL_START);
      const info = this.#insts.get(inst);
      const held = (now - startedAt) | 0;
      if (!info || held <= info.deadlineMs) return;
      const key = `${lane}:${inst}:${startedAt}`;
      if (this.#overran.has(key)) return;
      this.#overran.add(key);
      this.#opts.onOverrun(lane, inst, held, true);
    });
    if (!busy) this.#stopGuard();
  }

  #stopGuard(): void {
    clearInterval(this.#guard);
    this.#guard = undefined;
  }

  /** Stops every Worker; waiting callers get a {@link WorkerGoneError}. */
  terminate(): void {
    this.#terminated = true;
    this.#stopGuard();
    this.#lanes.forEach((l, lane) => {
      if (l) this.#lost(lane, l, "was stopped");
    });
  }

  #receive(l: Lane, msg: FromWorker): void {
    if (msg.t === "rpc") {
      this.#answer(l, msg);
      return;
    }
    if (msg.sink.length > 0) this.#opts.onSink(msg.sink);
    const settle = l.pending.get(msg.req);
    if (!settle) return;
    l.pending.delete(msg.req);
    settle(msg);
  }

  /** Serves one synchronous call of a Worker, with the asking instance's own grants. */
  #answer(l: Lane, msg: RpcRequest): void {
    const t0 = performance.now();
    let result: number;
    let data: Uint8Array | undefined;
    const info = this.#insts.get(msg.inst);
    const name = info?.manifest.name ?? "";
    try {
      if (!info || info.revoked) result = EdgeError.IO;
      else if (msg.op === "sensor") {
        if (info.sensorGrants.length === 0) result = EdgeError.DENIED;
        else {
          const buf = new Uint8Array(Math.min(Math.max(0, msg.cap), MAX_SENSOR_BYTES));
          result = readGrantedSensor(msg.path, info.sensorGrants, buf);
          if (result > 0) data = buf.subarray(0, result);
        }
      } else {
        if (!info.manifest.grants.kv) result = EdgeError.DENIED;
        else {
          data = this.#opts.kv.get(name, msg.key);
          result = data === undefined ? EdgeError.NOT_FOUND : data.length;
        }
      }
    } catch {
      result = EdgeError.IO;
      data = undefined;
    }
    if (data && data.length > 0) {
      const need = RPC_DATA_OFFSET + data.length;
      if (need > l.sab.byteLength) {
        if (need > l.sab.maxByteLength) result = EdgeError.TOO_BIG;
        else l.sab.grow(Math.min(l.sab.maxByteLength, Math.max(need, l.sab.byteLength * 2)));
      }
      if (result > 0) new Uint8Array(l.sab, RPC_DATA_OFFSET, data.length).set(data);
    }
    Atomics.store(l.ctrl, RPC_RESULT, result);
    // What this cost here, for the module's share of this thread (see worker.ts).
    const us = Math.ceil((performance.now() - t0) * 1000) + RPC_DISPATCH_US;
    Atomics.store(l.ctrl, RPC_COST_US, us);
    Atomics.store(l.ctrl, RPC_SEQ, msg.seq);
    Atomics.notify(l.ctrl, RPC_SEQ);
  }
}
