/**
 * ModuleHost: the lifecycle of installed modules (load, swap, unload),
 * routing of bus messages into per-module bounded queues with rate admission,
 * fault accounting with quarantine and back-off, and per-module statistics.
 *
 * Modules run on the runtime's main thread, many instances in one isolate;
 * the fuel rewriter bounds every guest call (see README.md for why not Workers).
 *
 * @module
 */

import { clearImmediate, setImmediate } from "node:timers";
import { join } from "node:path";
import { getLogger } from "@logtape/logtape";
import { ModuleFault, ModuleNotFoundError, ModuleValidationError } from "./errors.ts";
import type { FaultKind } from "./errors.ts";
import { type Manifest, parseManifest } from "./manifest.ts";
import { type ValidatedModule, validateModule } from "./validate.ts";
import { type CallOutcome, GuestInstance } from "./instance.ts";
import { TokenBucket } from "./host/context.ts";
import { type KvStore, SqliteKv, type StoreLike } from "./kv.ts";
import { ModuleStore } from "./persist.ts";

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
  queue_depth: number;
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
const SLICE_MS = 5;
const enc = new TextEncoder();

const zeroFaults = (): Record<FaultKind, number> => ({
  fuel: 0,
  trap: 0,
  stack_overflow: 0,
  memory: 0,
  host: 0,
  exit: 0,
});

class Record_ {
  instance: GuestInstance | undefined;
  state: ModuleState = "running";
  queue: BusMessageLike[] = [];
  unsubscribe: (() => void)[] = [];
  bucket: TokenBucket;
  loadedAt = new Date();
  consecutive = 0;
  backoffMs: number;
  until = 0;
  needsReset = false;
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
  constructor(public validated: ValidatedModule, quarantineMs: number) {
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
  #timer: ReturnType<typeof setImmediate> | undefined;
  #latency?: ReturnType<MetricsLike["histogram"]>;
  #rr = 0;

  constructor(options: ModuleHostOptions) {
    this.#opts = {
      queueCapacity: 256,
      faultLimit: 3,
      quarantineMs: 1000,
      logLinesPerSecond: 20,
      meter: true,
      preload: [],
      ...options,
    };
    if (this.#opts.queueCapacity < 1) {
      throw new RangeError(`queueCapacity must be at least 1, got ${this.#opts.queueCapacity}`);
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
    if (this.#timer !== undefined) clearImmediate(this.#timer);
    this.#timer = undefined;
    for (const r of this.#records.values()) r.unsubscribe.forEach((u) => u());
    this.#records.clear();
    this.#ready = false;
    return Promise.resolve();
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

  /** Unloads and deletes a module; its kv state is kept. */
  remove(name: string): Promise<void> {
    return this.#serialised(name, () => {
      const r = this.#records.get(name);
      if (!r && !this.#failed.has(name)) throw new ModuleNotFoundError(name);
      r?.unsubscribe.forEach((u) => u());
      this.#records.delete(name);
      this.#failed.delete(name);
      this.#disk.remove(name);
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
      queue_depth: r.queue.length,
      memory_bytes: r.instance?.memoryBytes ?? 0,
      kv_bytes: m.grants.kv ? this.#kv.usage(name) : 0,
      logs_dropped: r.logsDroppedBefore + (r.instance?.ctx.logsDropped ?? 0),
      quarantined_until: r.state === "quarantined" ? new Date(r.until).toISOString() : null,
    };
  }

  /**
   * Delivers one message now, bypassing the queue and the rate limit, and
   * answers what the module did.
   */
  deliver(name: string, topic: string, payload: Uint8Array): CallOutcome {
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
    return this.#call(r, topic, payload);
  }

  async #activate(
    manifest: Manifest,
    bytes: Uint8Array,
    persist = false,
  ): Promise<ValidatedModule> {
    const validated = await validateModule(bytes, manifest, { meter: this.#opts.meter });
    let instance: GuestInstance;
    try {
      instance = this.#instantiate(validated);
    } catch (err) {
      if (!(err instanceof ModuleFault)) throw err;
      throw new ModuleValidationError([`initialisation failed (${err.kind}): ${err.message}`], {
        cause: err,
      });
    }
    if (persist) {
      const stored = { ...manifest, sha256: validated.sha256 };
      this.#disk.save(
        manifest.name,
        validated.sha256,
        JSON.stringify(stored, null, 2) + "\n",
        bytes,
      );
    }
    // The swap: everything below is synchronous, so no guest call interleaves;
    // queued messages stay queued and go to the new version.
    const old = this.#records.get(manifest.name);
    const r = old ?? new Record_(validated, this.#opts.quarantineMs);
    if (old) {
      r.logsDroppedBefore += old.instance?.ctx.logsDropped ?? 0;
      r.unsubscribe.forEach((u) => u());
      r.unsubscribe = [];
      r.validated = validated;
      const mps = manifest.limits.messages_per_second;
      r.bucket = new TokenBucket(mps, mps);
      r.loadedAt = new Date();
    }
    r.instance = instance;
    r.state = "running";
    r.needsReset = false;
    r.consecutive = 0;
    r.backoffMs = this.#opts.quarantineMs;
    this.#records.set(manifest.name, r);
    this.#failed.delete(manifest.name);
    for (const filter of manifest.subscribe) {
      r.unsubscribe.push(this.#opts.bus.subscribe(filter, (msg) => this.#admit(r, msg)));
    }
    log.info("module {name} {version} running ({sha})", {
      name: manifest.name,
      version: manifest.version,
      sha: validated.sha256.slice(0, 12),
    });
    return validated;
  }

  #instantiate(validated: ValidatedModule): GuestInstance {
    return GuestInstance.create(validated, {
      kv: this.#kv,
      logRate: { perSecond: this.#opts.logLinesPerSecond, burst: this.#opts.logLinesPerSecond * 5 },
      logSink: (module, level, line) => {
        getLogger(["edged", "module", module])[LEVELS[level]]("{line}", { line });
      },
    });
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
    this.#schedule();
  }

  #schedule(): void {
    // setImmediate runs after the next I/O poll (ingest keeps flowing) without
    // the ~2 ms Deno adds to every setTimeout(0) hop.
    if (this.#timer === undefined) this.#timer = setImmediate(() => this.#drain());
  }

  /** Round-robin over modules with queued messages, one message each per turn, in short slices. */
  #drain(): void {
    this.#timer = undefined;
    const deadline = performance.now() + SLICE_MS;
    let pending = true;
    while (pending && performance.now() < deadline) {
      pending = false;
      const records = [...this.#records.values()];
      for (let i = 0; i < records.length; i++) {
        const r = records[(this.#rr + i) % records.length];
        const msg = r.queue.shift();
        if (!msg) continue;
        this.#release(r);
        if (r.state === "quarantined") {
          r.s.dropped.quarantine += r.queue.length + 1;
          r.queue = [];
          continue;
        }
        try {
          this.#call(r, msg.topic, msg.payload);
        } catch (err) {
          // A bug of ours must not kill the drain timer (and with it every module).
          log.error("delivery to module {name} failed: {error}", {
            name: r.manifest.name,
            error: String(err),
          });
        }
        if (r.queue.length > 0) pending = true;
      }
      this.#rr++;
    }
    if (pending || [...this.#records.values()].some((r) => r.queue.length > 0)) this.#schedule();
  }

  #release(r: Record_): void {
    if (r.state === "quarantined" && Date.now() >= r.until) {
      r.state = "running";
      // On probation: one more fault quarantines again, with a doubled back-off.
      r.consecutive = this.#opts.faultLimit - 1;
      log.info("module {name} released from quarantine", { name: r.manifest.name });
    }
  }

  #call(r: Record_, topic: string, payload: Uint8Array): CallOutcome {
    if (r.needsReset || !r.instance) {
      // After a fault the instance may hold broken state (a C stack pointer left
      // mid-frame, a half-built heap), so the module restarts from a fresh instance.
      try {
        r.logsDroppedBefore += r.instance?.ctx.logsDropped ?? 0;
        r.instance = this.#instantiate(r.validated);
        r.needsReset = false;
      } catch (err) {
        const f = err instanceof ModuleFault ? err : new ModuleFault("host", String(err));
        const outcome: CallOutcome = {
          status: null,
          published: [],
          logs: [],
          fuelUsed: 0,
          error: { kind: f.kind, message: `restart after fault: ${f.message}` },
        };
        this.#fault(r, outcome.error!);
        return outcome;
      }
    }
    const t0 = performance.now();
    const out = r.instance.call(enc.encode(topic), payload);
    this.#latency?.observe((performance.now() - t0) / 1000, { module: r.manifest.name });
    r.s.messages_in++;
    r.s.fuel_used += out.fuelUsed;
    r.s.last_fuel_used = out.fuelUsed;
    if (out.error) {
      this.#fault(r, out.error);
      return out;
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
    return out;
  }

  #fault(r: Record_, error: { kind: FaultKind; message: string }): void {
    r.s.errors++;
    r.s.faults[error.kind]++;
    r.s.last_error = { ...error, at: new Date().toISOString() };
    r.needsReset = true;
    r.consecutive++;
    log.warn("module {name} fault ({kind}): {message}", { name: r.manifest.name, ...error });
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
