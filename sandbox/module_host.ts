/**
 * ModuleHost: the lifecycle of installed modules (load, swap, unload),
 * routing of bus messages into per-module bounded queues with rate admission,
 * fault accounting with quarantine and back-off, and per-module statistics.
 *
 * Modules run in a small pool of Workers without permissions, many instances
 * per Worker (`pool.ts`); the fuel rewriter bounds every guest call. This
 * thread keeps the queues, the statistics and every privilege.
 *
 * @module
 */

import { join } from "node:path";
import { getLogger } from "@logtape/logtape";
import { ModuleFault, ModuleNotFoundError, ModuleValidationError } from "./errors.ts";
import type { FaultKind } from "./errors.ts";
import { type Manifest, parseManifest } from "./manifest.ts";
import { type ValidatedModule, validateModule } from "./validate.ts";
import type { CallOutcome } from "./instance.ts";
import { TokenBucket } from "./host/context.ts";
import { type KvStore, SqliteKv, type StoreLike } from "./kv.ts";
import { ModuleStore } from "./persist.ts";
import { WorkerGoneError, WorkerPool } from "./pool.ts";
import type { WireCall, WireOutcome } from "./pool_protocol.ts";

const log = getLogger(["edged", "modules"]);
const LEVELS = ["debug", "info", "warning", "error"] as const;

/** A bus message (the runtime's `BusMessage`). */
export interface BusMessageLike {
  topic: string;
  payload: Uint8Array;
  source: string;
}

/** The part of the runtime's Bus the sandbox needs. */
export interface BusLike {
  publish(topic: string, payload: Uint8Array, source?: string): void;
  subscribe(filter: string, handler: (msg: BusMessageLike) => void): () => void;
}

/** The part of the runtime's Metrics registry the sandbox needs. */
export interface MetricsLike {
  gauge(
    name: string,
    help: string,
    labelNames: readonly string[],
    collect: (set: (v: number, labels?: Record<string, string>) => void) => void,
  ): unknown;
  collectedCounter(
    name: string,
    help: string,
    labelNames: readonly string[],
    collect: (set: (v: number, labels?: Record<string, string>) => void) => void,
  ): unknown;
  histogram(
    name: string,
    help: string,
    buckets: readonly number[] | undefined,
    labelNames: readonly string[],
  ): {
    observe(v: number, labels?: Record<string, string>): void;
    remove(labels?: Record<string, string>): void;
  };
}

/** Options of {@link ModuleHost}. */
export interface ModuleHostOptions {
  /** Installed modules are kept in `<dataDir>/modules`. */
  dataDir: string;
  bus: BusLike;
  /** Where `kv_get`/`kv_set` state lives (the runtime's Store). */
  store: StoreLike;
  /** Messages waiting per module before new ones are dropped. @default 256 */
  queueCapacity?: number;
  /** Consecutive faults that quarantine a module. @default 3 */
  faultLimit?: number;
  /** First quarantine back-off; doubles per quarantine up to 5 minutes. @default 1000 */
  quarantineMs?: number;
  /** Module log lines per second (burst 5×) reaching the device log. @default 20 */
  logLinesPerSecond?: number;
  /** Module directories (manifest.json + module.wasm) installed at start when not yet installed. */
  preload?: string[];
  /** Fuel metering; off only for benchmarks. @default true */
  meter?: boolean;
  /**
   * Workers that run module code (many modules each). @default 2
   * One more, the probation Worker, starts when a module first runs out of fuel.
   */
  workers?: number;
  /** Registry for per-module gauges (scraped at /metrics). */
  metrics?: MetricsLike;
}

/** Lifecycle state of an installed module. */
export type ModuleState = "running" | "quarantined" | "failed";

/** Per-module statistics, as the API shows them. */
export interface ModuleStatus {
  name: string;
  version: string;
  sha256: string;
  state: ModuleState;
  subscribe: string[];
  loaded_at: string;
  messages_in: number;
  messages_out: number;
  errors: number;
  faults: Record<FaultKind, number>;
  dropped: { rate: number; overflow: number; quarantine: number; oversize: number };
  /** Messages queued, plus those sent to the module's Worker and not yet done. */
  queue_depth: number;
  /** The Worker running the module (0-based; `modules.workers` is the probation Worker), or null. */
  worker: number | null;
  fuel_used: number;
  last_fuel_used: number;
  memory_bytes: number;
  kv_bytes: number;
  logs_dropped: number;
  quarantined_until: string | null;
  last_error: { kind: FaultKind | "load"; message: string; at: string } | null;
}

/** Thrown by {@link ModuleHost.deliver} while a module is quarantined. */
export class ModuleQuarantinedError extends Error {
  constructor(name: string, until: number) {
    super(
      `module "${name}" is quarantined until ${
        new Date(until).toISOString()
      } after repeated faults`,
    );
    this.name = "ModuleQuarantinedError";
  }
}

/** Thrown by {@link ModuleHost.deliver} for an installed module that failed to load. */
export class ModuleFailedError extends Error {
  constructor(name: string, reason: string) {
    super(`module "${name}" is installed but failed to load: ${reason}`);
    this.name = "ModuleFailedError";
  }
}

/** Thrown by {@link ModuleHost.deliver} for a payload above `limits.max_payload_bytes`. */
export class PayloadTooLargeError extends Error {
  constructor(size: number, limit: number) {
    super(`payload is ${size} bytes, limits.max_payload_bytes is ${limit}`);
    this.name = "PayloadTooLargeError";
  }
}

const MAX_BACKOFF_MS = 300_000;
/** Messages sent to a Worker in one batch (one per module per round). */
const BATCH = 128;

const zeroFaults = (): Record<FaultKind, number> => ({
  fuel: 0,
  trap: 0,
  stack_overflow: 0,
  memory: 0,
  host: 0,
  exit: 0,
});

class Record_ {
  /** The running instance's id in the pool (undefined while a crashed Worker's modules reload). */
  inst: number | undefined;
  state: ModuleState = "running";
  queue: BusMessageLike[] = [];
  unsubscribe: (() => void)[] = [];
  bucket: TokenBucket;
  loadedAt = new Date();
  consecutive = 0;
  backoffMs: number;
  until = 0;
  memoryBytes = 0;
  /** Messages sent to the Worker whose outcome is not in yet. */
  inFlight = 0;
  /** Log lines dropped by the current version, and by the versions before it. */
  logsDropped = 0;
  logsDroppedBefore = 0;
  s = {
    messages_in: 0,
    messages_out: 0,
    errors: 0,
    faults: zeroFaults(),
    dropped: { rate: 0, overflow: 0, quarantine: 0, oversize: 0 },
    fuel_used: 0,
    last_fuel_used: 0,
    last_error: null as ModuleStatus["last_error"],
  };
  constructor(
    public validated: ValidatedModule,
    quarantineMs: number,
    /** The Worker the instance runs in. */
    public lane: number,
  ) {
    const mps = validated.manifest.limits.messages_per_second;
    this.bucket = new TokenBucket(mps, mps);
    this.backoffMs = quarantineMs;
  }
  get manifest(): Manifest {
    return this.validated.manifest;
  }
}

/** Runs installed modules. Create one per runtime; see {@link ModuleHost.component}. */
export class ModuleHost {
  readonly #opts: Required<Omit<ModuleHostOptions, "preload" | "metrics">> & { preload: string[] };
  #pool: WorkerPool | undefined;
  /** Per Worker: a batch is out (one at a time, so each module's messages stay in order). */
  #busy: boolean[] = [];
  #kicked: boolean[] = [];
  #stopped = false;
  readonly #records = new Map<string, Record_>();
  /** Installed modules that could not be loaded at start (state "failed"). */
  readonly #failed = new Map<
    string,
    { version: string; sha256: string; message: string; at: Date }
  >();
  readonly #kv: KvStore;
  readonly #disk: ModuleStore;
  readonly #locks = new Map<string, Promise<unknown>>();
  #ready = false;
  #latency?: ReturnType<MetricsLike["histogram"]>;
  #rr: number[] = [];

  constructor(options: ModuleHostOptions) {
    this.#opts = {
      queueCapacity: 256,
      faultLimit: 3,
      quarantineMs: 1000,
      logLinesPerSecond: 20,
      meter: true,
      workers: 2,
      preload: [],
      ...options,
    };
    if (this.#opts.queueCapacity < 1) {
      throw new RangeError(`queueCapacity must be at least 1, got ${this.#opts.queueCapacity}`);
    }
    if (!Number.isInteger(this.#opts.workers) || this.#opts.workers < 1) {
      throw new RangeError(`workers must be a positive integer, got ${this.#opts.workers}`);
    }
    this.#kv = new SqliteKv(options.store);
    this.#disk = new ModuleStore(join(options.dataDir, "modules"));
    if (options.metrics) this.#registerMetrics(options.metrics);
  }

  #registerMetrics(metrics: MetricsLike): void {
    const each = (fn: (r: ModuleStatus) => void) => {
      for (const name of this.names()) fn(this.status(name));
    };
    metrics.gauge("edged_modules", "Installed modules by state.", ["state"], (set) => {
      const counts: Record<ModuleState, number> = { running: 0, quarantined: 0, failed: 0 };
      each((s) => counts[s.state]++);
      for (const [state, n] of Object.entries(counts)) set(n, { state });
    });
    metrics.collectedCounter(
      "edged_module_messages_total",
      "Messages per module since load: in (delivered), out (published), dropped.",
      ["module", "direction"],
      (set) =>
        each((s) => {
          set(s.messages_in, { module: s.name, direction: "in" });
          set(s.messages_out, { module: s.name, direction: "out" });
          const d = s.dropped;
          set(d.rate + d.overflow + d.quarantine + d.oversize, {
            module: s.name,
            direction: "dropped",
          });
        }),
    );
    metrics.collectedCounter(
      "edged_module_faults_total",
      "Faults per module and kind since load.",
      ["module", "kind"],
      (set) =>
        each((s) => {
          for (const [kind, n] of Object.entries(s.faults)) set(n, { module: s.name, kind });
        }),
    );
    metrics.collectedCounter(
      "edged_module_fuel_used_total",
      "Fuel consumed per module since load.",
      ["module"],
      (set) => each((s) => set(s.fuel_used, { module: s.name })),
    );
    metrics.gauge(
      "edged_module_memory_bytes",
      "Linear memory per module.",
      ["module"],
      (set) => each((s) => set(s.memory_bytes, { module: s.name })),
    );
    this.#latency = metrics.histogram(
      "edged_module_call_duration_seconds",
      "Time one edge_on_message call takes, per module.",
      [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1],
      ["module"],
    );
  }

  /** Loads installed modules, then preloads; resolves once all are running. */
  async start(): Promise<void> {
    for (const stored of this.#disk.loadAll()) {
      if ("error" in stored) {
        log.error("cannot read installed module {name}: {error}", {
          name: stored.name,
          error: stored.error.message,
        });
        this.#markFailed(
          stored.name,
          "unknown",
          "",
          `cannot read from disk: ${stored.error.message}`,
        );
        continue;
      }
      let version = "unknown";
      let sha256 = "";
      try {
        const manifest = parseManifest(stored.manifestJson);
        version = manifest.version;
        sha256 = manifest.sha256 ?? "";
        await this.#activate(manifest, stored.bytes);
      } catch (err) {
        log.error("installed module {name} did not load: {error}", {
          name: stored.name,
          error: String(err),
        });
        this.#markFailed(stored.name, version, sha256, (err as Error).message);
      }
    }
    for (const dir of this.#opts.preload) {
      try {
        const manifestJson = await Deno.readTextFile(join(dir, "manifest.json"));
        const manifest = parseManifest(manifestJson);
        if (this.#records.has(manifest.name) || this.#failed.has(manifest.name)) continue;
        await this.install(manifestJson, await Deno.readFile(join(dir, "module.wasm")));
        log.info("preloaded module {name} from {dir}", { name: manifest.name, dir });
      } catch (err) {
        log.error("preloading {dir} failed: {error}", { dir, error: String(err) });
      }
    }
    this.#ready = true;
  }

  #markFailed(name: string, version: string, sha256: string, message: string): void {
    this.#failed.set(name, { version, sha256, message, at: new Date() });
  }

  /** Unsubscribes every module and stops delivering. */
  stop(): Promise<void> {
    this.#stopped = true;
    for (const r of this.#records.values()) r.unsubscribe.forEach((u) => u());
    this.#records.clear();
    this.#pool?.terminate();
    this.#pool = undefined;
    this.#ready = false;
    return Promise.resolve();
  }

  /** The Worker pool, started on first use. */
  #workers(): WorkerPool {
    if (this.#stopped) throw new WorkerGoneError(0, "is stopped: the module host was stopped");
    if (!this.#pool) {
      const perSecond = this.#opts.logLinesPerSecond;
      this.#pool = new WorkerPool({
        size: this.#opts.workers + 1, // the last one is the probation Worker
        kv: this.#kv,
        logRate: { perSecond, burst: perSecond * 5 },
        onSink: (lines) => {
          for (const { module, level, line } of lines) {
            getLogger(["edged", "module", module])[LEVELS[level]]("{line}", { line });
          }
        },
        onCrash: (lane, why) => this.#recover(lane, why),
      });
      this.#busy = new Array(this.#pool.size).fill(false);
      this.#kicked = new Array(this.#pool.size).fill(false);
      this.#rr = new Array(this.#pool.size).fill(0);
    }
    return this.#pool;
  }

  /** A Worker died: its modules lose their in-flight messages (counted) and load again. */
  #recover(lane: number, why: string): void {
    log.error("sandbox worker {lane} {why}; reloading its modules", { lane, why });
    for (const r of this.#records.values()) {
      if (r.lane === lane) this.#reload(r, lane, "reload after a worker crash");
    }
  }

  /**
   * Runs `r` from a fresh instance in Worker `lane`. Its queue waits meanwhile;
   * a swap that lands first wins.
   */
  #reload(r: Record_, lane: number, what: string): void {
    // The old Worker lets go first (its kv cache of the module goes with it).
    const unloaded = r.inst !== undefined ? this.#pool?.unload(r.inst) : undefined;
    r.inst = undefined;
    r.lane = lane;
    void this.#serialised(r.manifest.name, async () => {
      await unloaded;
      if (this.#records.get(r.manifest.name) !== r || r.inst !== undefined) return;
      try {
        const loaded = await this.#workers().load(lane, r.validated);
        if (this.#records.get(r.manifest.name) !== r) {
          void this.#pool?.unload(loaded.inst);
          return;
        }
        r.inst = loaded.inst;
        r.memoryBytes = loaded.memoryBytes;
        this.#kick(lane);
      } catch (err) {
        if (!this.#stopped) this.#fault(r, { kind: "host", message: `${what}: ${err}` });
      }
    }).catch(() => {});
  }

  /** Reasons the host is not ready (empty once started). */
  notReady(): string[] {
    return this.#ready ? [] : ["modules: installed modules are still loading"];
  }

  /**
   * Validates, persists and runs a module; an installed version of the same
   * name keeps running until the new one is ready, then is replaced in one step.
   * @throws {ModuleValidationError} with every reason when refused.
   */
  install(manifestInput: unknown, bytes: Uint8Array): Promise<ModuleStatus> {
    const manifest = parseManifest(manifestInput);
    return this.#serialised(manifest.name, async () => {
      const validated = await this.#activate(manifest, bytes, true);
      return this.status(validated.manifest.name);
    });
  }

  /**
   * Unloads and deletes a module, and its kv state unless `keepState`.
   * Messages already sent to its Worker finish there without kv or sensor
   * answers (EdgeError.IO); queued ones are dropped.
   */
  remove(name: string, { keepState = false }: { keepState?: boolean } = {}): Promise<void> {
    return this.#serialised(name, () => {
      const r = this.#records.get(name);
      if (!r && !this.#failed.has(name)) throw new ModuleNotFoundError(name);
      r?.unsubscribe.forEach((u) => u());
      // Revoked at once: messages still in its Worker get no more kv or sensor answers.
      if (r?.inst !== undefined) void this.#pool?.unload(r.inst, { revoke: true });
      this.#records.delete(name);
      this.#failed.delete(name);
      this.#disk.remove(name);
      if (!keepState) this.#kv.clear(name);
      this.#latency?.remove({ module: name });
      log.info("module {name} removed", { name });
      return Promise.resolve();
    });
  }

  /** Names of installed modules. */
  names(): string[] {
    return [...new Set([...this.#records.keys(), ...this.#failed.keys()])].sort();
  }

  /** Statistics of one module. @throws {ModuleNotFoundError} */
  status(name: string): ModuleStatus {
    const r = this.#records.get(name);
    if (!r) {
      const f = this.#failed.get(name);
      if (!f) throw new ModuleNotFoundError(name);
      return {
        name,
        version: f.version,
        sha256: f.sha256,
        state: "failed",
        subscribe: [],
        loaded_at: f.at.toISOString(),
        messages_in: 0,
        messages_out: 0,
        errors: 0,
        faults: zeroFaults(),
        dropped: { rate: 0, overflow: 0, quarantine: 0, oversize: 0 },
        queue_depth: 0,
        worker: null,
        fuel_used: 0,
        last_fuel_used: 0,
        memory_bytes: 0,
        kv_bytes: 0,
        logs_dropped: 0,
        quarantined_until: null,
        last_error: { kind: "load", message: f.message, at: f.at.toISOString() },
      };
    }
    const m = r.manifest;
    return {
      name,
      version: m.version,
      sha256: r.validated.sha256,
      state: r.state,
      subscribe: m.subscribe,
      loaded_at: r.loadedAt.toISOString(),
      ...structuredClone(r.s),
      queue_depth: r.queue.length + r.inFlight,
      worker: r.lane,
      memory_bytes: r.memoryBytes,
      kv_bytes: m.grants.kv ? this.#kv.usage(name) : 0,
      logs_dropped: r.logsDroppedBefore + r.logsDropped,
      quarantined_until: r.state === "quarantined" ? new Date(r.until).toISOString() : null,
    };
  }

  /**
   * Delivers one message now, bypassing the queue and the rate limit, and
   * answers what the module did.
   */
  async deliver(name: string, topic: string, payload: Uint8Array): Promise<CallOutcome> {
    const r = this.#records.get(name);
    if (!r) {
      const f = this.#failed.get(name);
      if (f) throw new ModuleFailedError(name, f.message);
      throw new ModuleNotFoundError(name);
    }
    const limit = r.manifest.limits.max_payload_bytes;
    if (payload.length > limit) throw new PayloadTooLargeError(payload.length, limit);
    this.#release(r);
    if (r.state === "quarantined") throw new ModuleQuarantinedError(name, r.until);
    // Moving to another Worker (see #reload): wait for it.
    if (r.inst === undefined) await this.#serialised(name, () => Promise.resolve());
    const inst = r.inst;
    if (inst === undefined) throw new ModuleFailedError(name, "it could not be loaded again");
    const [out] = await this.#workers().run(r.lane, [{ inst, topic, payload }]);
    this.#apply(r, inst, out!);
    const { status, published, logs, fuelUsed, error } = out!;
    return { status, published, logs, fuelUsed, error };
  }

  async #activate(
    manifest: Manifest,
    bytes: Uint8Array,
    persist = false,
  ): Promise<ValidatedModule> {
    const validated = await validateModule(bytes, manifest, { meter: this.#opts.meter });
    const pool = this.#workers();
    const old = this.#records.get(manifest.name);
    const lane = old?.lane ?? this.#leastLoadedLane();
    let loaded: { inst: number; memoryBytes: number };
    try {
      // The old version keeps running meanwhile, in the same Worker (so messages stay in order).
      loaded = await pool.load(lane, validated);
    } catch (err) {
      if (!(err instanceof ModuleFault)) throw err;
      throw new ModuleValidationError([`initialisation failed (${err.kind}): ${err.message}`], {
        cause: err,
      });
    }
    if (persist) {
      const stored = { ...manifest, sha256: validated.sha256 };
      try {
        this.#disk.save(
          manifest.name,
          validated.sha256,
          JSON.stringify(stored, null, 2) + "\n",
          bytes,
        );
      } catch (err) {
        void pool.unload(loaded.inst);
        throw err;
      }
    }
    // The swap: everything below is synchronous. Messages already sent to the
    // Worker finish on the old instance (it is unloaded after them); queued
    // messages stay queued and go to the new version.
    const r = old ?? new Record_(validated, this.#opts.quarantineMs, lane);
    if (old) {
      if (old.inst !== undefined) void pool.unload(old.inst);
      r.logsDroppedBefore += old.logsDropped;
      r.logsDropped = 0;
      r.unsubscribe.forEach((u) => u());
      r.unsubscribe = [];
      r.validated = validated;
      const mps = manifest.limits.messages_per_second;
      r.bucket = new TokenBucket(mps, mps);
      r.loadedAt = new Date();
    }
    r.inst = loaded.inst;
    r.lane = lane;
    r.memoryBytes = loaded.memoryBytes;
    r.state = "running";
    r.consecutive = 0;
    r.backoffMs = this.#opts.quarantineMs;
    this.#records.set(manifest.name, r);
    this.#failed.delete(manifest.name);
    for (const filter of manifest.subscribe) {
      r.unsubscribe.push(this.#opts.bus.subscribe(filter, (msg) => this.#admit(r, msg)));
    }
    // Messages that queued while no instance was ready (a move to another Worker) go now.
    if (r.queue.length > 0) this.#kick(lane);
    log.info("module {name} {version} running ({sha})", {
      name: manifest.name,
      version: manifest.version,
      sha: validated.sha256.slice(0, 12),
    });
    return validated;
  }

  /** Bus handler: admission only; never blocks the publisher. */
  #admit(r: Record_, msg: BusMessageLike): void {
    if (this.#records.get(r.manifest.name) !== r) return;
    if (msg.source === `module:${r.manifest.name}`) return; // no self-delivery loops
    if (msg.payload.length > r.manifest.limits.max_payload_bytes) {
      r.s.dropped.oversize++;
      return;
    }
    if (r.state === "quarantined" && Date.now() < r.until) {
      r.s.dropped.quarantine++;
      return;
    }
    if (!r.bucket.take()) {
      r.s.dropped.rate++;
      return;
    }
    if (r.queue.length >= this.#opts.queueCapacity) {
      r.s.dropped.overflow++;
      return;
    }
    r.queue.push(msg);
    this.#kick(r.lane);
  }

  /** The regular Worker with the fewest modules (never the probation Worker). */
  #leastLoadedLane(): number {
    const load = new Array<number>(this.#opts.workers).fill(0);
    for (const r of this.#records.values()) if (r.lane < load.length) load[r.lane]++;
    return load.indexOf(Math.min(...load));
  }

  /** Pumps Worker `lane` once the current synchronous work is done (bursts go as one batch). */
  #kick(lane: number): void {
    if (this.#kicked[lane] || this.#stopped) return;
    this.#kicked[lane] = true;
    queueMicrotask(() => {
      this.#kicked[lane] = false;
      this.#pump(lane);
    });
  }

  /**
   * Sends Worker `lane` one batch: round-robin over its modules with queued
   * messages, one message each per round, up to {@link BATCH}. One batch is out
   * per Worker at a time; the next goes when its answer is in.
   */
  #pump(lane: number): void {
    if (this.#busy[lane] || this.#stopped || !this.#pool) return;
    const records = [...this.#records.values()].filter((r) => r.lane === lane && r.queue.length);
    if (records.length === 0) return;
    const start = this.#rr[lane]++ % records.length;
    const calls: WireCall[] = [];
    const sent: { r: Record_; msg: BusMessageLike }[] = [];
    let more = true;
    while (more && calls.length < BATCH) {
      more = false;
      for (let i = 0; i < records.length && calls.length < BATCH; i++) {
        const r = records[(start + i) % records.length];
        if (r.queue.length === 0 || r.inst === undefined) continue;
        this.#release(r);
        if (r.state === "quarantined") {
          r.s.dropped.quarantine += r.queue.length;
          r.queue = [];
          continue;
        }
        const msg = r.queue.shift()!;
        calls.push({ inst: r.inst, topic: msg.topic, payload: msg.payload });
        sent.push({ r, msg });
        r.inFlight++;
        if (r.queue.length > 0) more = true;
      }
    }
    if (calls.length === 0) return;
    this.#busy[lane] = true;
    this.#pool.run(lane, calls).then((outcomes) => {
      for (const { r } of sent) r.inFlight--;
      // Messages a Worker did not run (their module faulted earlier in the batch)
      // go back to the front of their queue, in order, unless it is now quarantined.
      const back = new Map<Record_, BusMessageLike[]>();
      outcomes.forEach((out, i) => {
        const { r, msg } = sent[i];
        if (out) this.#apply(r, calls[i].inst, out);
        else back.set(r, [...(back.get(r) ?? []), msg]);
      });
      for (const [r, msgs] of back) {
        if (r.state === "quarantined") r.s.dropped.quarantine += msgs.length;
        else r.queue.unshift(...msgs);
      }
    }, (err) => {
      for (const { r } of sent) r.inFlight--;
      if (this.#stopped) return;
      // The Worker died with the batch (see #recover): these messages are lost, and counted.
      const hit = new Map<Record_, number>();
      for (const { r } of sent) hit.set(r, (hit.get(r) ?? 0) + 1);
      for (const [r, n] of hit) {
        r.s.messages_in += n;
        this.#fault(r, { kind: "host", message: `${n} message(s) lost: ${err.message}` });
      }
    }).catch((err) => {
      // A bug of ours must not stop delivery to every module of this Worker.
      log.error("delivery on sandbox worker {lane} failed: {error}", { lane, error: String(err) });
    }).finally(() => {
      this.#busy[lane] = false;
      this.#pump(lane);
    });
  }

  #release(r: Record_): void {
    if (r.state === "quarantined" && Date.now() >= r.until) {
      r.state = "running";
      // On probation: one more fault quarantines again, with a doubled back-off.
      r.consecutive = this.#opts.faultLimit - 1;
      log.info("module {name} released from quarantine", { name: r.manifest.name });
    }
  }

  /** Books one outcome: statistics, faults, and the module's publications onto the bus. */
  #apply(r: Record_, inst: number, out: WireOutcome): void {
    this.#latency?.observe(out.ms / 1000, { module: r.manifest.name });
    r.s.messages_in++;
    r.s.fuel_used += out.fuelUsed;
    r.s.last_fuel_used = out.fuelUsed;
    if (inst === r.inst) {
      r.memoryBytes = out.memoryBytes;
      r.logsDropped = out.logsDropped;
    }
    if (out.error) {
      this.#fault(r, out.error);
      return;
    }
    r.consecutive = 0;
    r.backoffMs = this.#opts.quarantineMs;
    for (const p of out.published) {
      try {
        this.#opts.bus.publish(p.topic, p.payload, `module:${r.manifest.name}`);
        r.s.messages_out++;
      } catch (err) {
        // The host checked the topic already; a bus that still refuses it must not stop delivery.
        log.error("bus refused {topic} from module {name}: {error}", {
          topic: p.topic,
          name: r.manifest.name,
          error: String(err),
        });
      }
    }
  }

  #fault(r: Record_, error: { kind: FaultKind; message: string }): void {
    r.s.errors++;
    r.s.faults[error.kind]++;
    r.s.last_error = { ...error, at: new Date().toISOString() };
    r.consecutive++;
    log.warn("module {name} fault ({kind}): {message}", { name: r.manifest.name, ...error });
    const probation = this.#opts.workers;
    if (error.kind === "fuel" && r.lane !== probation && this.#records.get(r.manifest.name) === r) {
      // A module that used up its fuel may do it again, holding its Worker for the whole
      // budget each time: it goes on in the probation Worker, away from well-behaved modules.
      // (A fault discards the instance anyway, so the move costs it nothing.)
      log.warn("module {name} moves to the probation worker", { name: r.manifest.name });
      this.#reload(r, probation, "move to the probation worker");
    }
    if (r.consecutive >= this.#opts.faultLimit) {
      r.state = "quarantined";
      r.until = Date.now() + r.backoffMs;
      log.warn("module {name} quarantined for {ms} ms", { name: r.manifest.name, ms: r.backoffMs });
      r.backoffMs = Math.min(r.backoffMs * 2, MAX_BACKOFF_MS);
      r.consecutive = 0;
    }
  }

  async #serialised<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(name) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    this.#locks.set(name, next);
    try {
      return await next;
    } finally {
      if (this.#locks.get(name) === next) this.#locks.delete(name);
    }
  }
}
