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
import type { Bus, BusMessage, Histogram, Metrics } from "../runtime/mod.ts";
import {
  ModuleFailedError,
  ModuleFault,
  ModuleNotFoundError,
  ModuleQuarantinedError,
  ModuleValidationError,
  PayloadTooLargeError,
  WorkerGoneError,
} from "./errors.ts";
import type { FaultKind } from "./errors.ts";
import { type Manifest, parseManifest } from "./manifest.ts";
import { type ValidatedModule, validateModule } from "./validate.ts";
import type { CallOutcome } from "./instance.ts";
import { type KvStore, SqliteKv, type StoreLike } from "./kv.ts";
import { ModuleStore } from "./persist.ts";
import { WorkerPool } from "./pool.ts";
import type { WireOutcome } from "./pool_protocol.ts";
import {
  type FailedModule,
  failedStatus,
  ModuleRecord,
  type ModuleStatus,
} from "./module_record.ts";
import { registerModuleMetrics } from "./module_metrics.ts";
import { Quarantine } from "./quarantine.ts";
import { Dispatcher } from "./dispatch.ts";
import type { NnPoolLink } from "./nn/service.ts";
import { callDeadlineMs } from "./costs.ts";

const log = getLogger(["edged", "modules"]);
const LEVELS = ["debug", "info", "warning", "error"] as const;

/** Options of {@link ModuleHost}. */
export interface ModuleHostOptions {
  /** Installed modules are kept in `<dataDir>/modules`. */
  dataDir: string;
  bus: Pick<Bus, "publish" | "subscribe">;
  /** Where `kv_get`/`kv_set` state lives (the runtime's Store). */
  store: StoreLike;
  /** Messages waiting per module before new ones are dropped. @default 256 */
  queueCapacity?: number;
  /** Payload bytes waiting per module before new messages are dropped (one always fits). @default 8 MiB */
  queueBytes?: number;
  /** Consecutive faults that quarantine a module. @default 3 */
  faultLimit?: number;
  /** First quarantine back-off; doubles per quarantine up to 5 minutes. @default 1000 */
  quarantineMs?: number;
  /** Module log lines per second (burst 5×) reaching the device log. @default 20 */
  logLinesPerSecond?: number;
  /**
   * Milliseconds per second of the runtime's thread one module's kv and sensor
   * calls may take (a Worker's modules together: 4×); past it they answer
   * QUOTA. @default 50
   */
  threadMsPerSecond?: number;
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
  metrics?: Metrics;
  /** The inference engine's side (`nn/service.ts`), for modules granted `nn`. */
  nn?: NnPoolLink;
  /**
   * The wall-clock deadline of one call, from its fuel budget.
   * @default callDeadlineMs (`costs.ts`: 4 × the budget's calibrated time + 100 ms)
   */
  deadlineMs?: (fuelPerMessage: number) => number;
}

/** Runs installed modules. Create one per runtime; see {@link ModuleHost.component}. */
export class ModuleHost {
  readonly #opts:
    & Required<Omit<ModuleHostOptions, "preload" | "metrics" | "nn">>
    & Pick<ModuleHostOptions, "nn">
    & { preload: string[] };
  #pool: WorkerPool | undefined;
  #stopped = false;
  readonly #records = new Map<string, ModuleRecord>();
  /** Installed modules that could not be loaded at start (state "failed"). */
  readonly #failed = new Map<string, FailedModule>();
  readonly #kv: KvStore;
  readonly #disk: ModuleStore;
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #quarantine: Quarantine;
  readonly #dispatch: Dispatcher;
  #ready = false;
  #latency?: Histogram;

  constructor(options: ModuleHostOptions) {
    this.#opts = {
      queueCapacity: 256,
      queueBytes: 8 << 20,
      faultLimit: 3,
      quarantineMs: 1000,
      logLinesPerSecond: 20,
      threadMsPerSecond: 50,
      meter: true,
      workers: 2,
      preload: [],
      deadlineMs: callDeadlineMs,
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
    this.#quarantine = new Quarantine(this.#opts.faultLimit, this.#opts.quarantineMs);
    this.#dispatch = new Dispatcher({
      stopped: () => this.#stopped,
      pool: () => this.#pool,
      recordsIn: (lane) => [...this.#records.values()].filter((r) => r.lane === lane),
      release: (r) => this.#quarantine.release(r),
      apply: (r, inst, out) => this.#apply(r, inst, out),
      lost: (r, n, err) => {
        r.s.messages_in += n;
        this.#fault(r, { kind: "host", message: `${n} message(s) lost: ${err.message}` });
      },
    });
    if (options.metrics) {
      this.#latency = registerModuleMetrics(
        options.metrics,
        () => this.names().map((n) => this.status(n)),
      );
    }
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
        threadShare: {
          moduleMsPerSecond: this.#opts.threadMsPerSecond,
          workerMsPerSecond: 4 * this.#opts.threadMsPerSecond,
        },
        onSink: (lines) => {
          for (const { module, level, line } of lines) {
            getLogger(["edged", "module", module])[LEVELS[level]]("{line}", { line });
          }
        },
        onCrash: (lane, why) => this.#recover(lane, why),
        nn: this.#opts.nn,
        deadlineMs: (m) => this.#opts.deadlineMs(m.limits.fuel_per_message),
        onOverrun: (lane, inst, heldMs, running) => this.#overrun(lane, inst, heldMs, running),
      });
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
  #reload(r: ModuleRecord, lane: number, what: string): void {
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
        this.#dispatch.kick(lane);
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
    if (r) return r.status(r.manifest.grants.kv ? this.#kv.usage(name) : 0);
    const f = this.#failed.get(name);
    if (!f) throw new ModuleNotFoundError(name);
    return failedStatus(name, f);
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
    this.#quarantine.release(r);
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
    const r = old ?? new ModuleRecord(validated, this.#opts.quarantineMs, lane);
    if (old) {
      if (old.inst !== undefined) void pool.unload(old.inst);
      r.unsubscribe.forEach((u) => u());
      r.unsubscribe = [];
      r.swapTo(validated);
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
    if (r.queue.length > 0) this.#dispatch.kick(lane);
    log.info("module {name} {version} running ({sha})", {
      name: manifest.name,
      version: manifest.version,
      sha: validated.sha256.slice(0, 12),
    });
    return validated;
  }

  /** Bus handler: admission only; never blocks the publisher. */
  #admit(r: ModuleRecord, msg: BusMessage): void {
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
    if (
      r.queue.length >= this.#opts.queueCapacity ||
      (r.queue.length > 0 && r.queueBytes + msg.payload.length > this.#opts.queueBytes)
    ) {
      r.s.dropped.overflow++;
      return;
    }
    r.enqueue(msg);
    this.#dispatch.kick(r.lane);
  }

  /** The regular Worker with the fewest modules (never the probation Worker). */
  #leastLoadedLane(): number {
    const load = new Array<number>(this.#opts.workers).fill(0);
    for (const r of this.#records.values()) if (r.lane < load.length) load[r.lane]++;
    return load.indexOf(Math.min(...load));
  }

  /** Books one outcome: statistics, faults, and the module's publications onto the bus. */
  #apply(r: ModuleRecord, inst: number, out: WireOutcome): void {
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
    this.#quarantine.ok(r);
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

  /**
   * A call held its Worker past its deadline (see the wall-clock guard in
   * `pool.ts`): counted, and the module moves to the probation Worker so its
   * next slow call holds up nobody else. The call itself is not stopped (it
   * cannot be) and its outcome stands when it completes.
   */
  #overrun(lane: number, inst: number, heldMs: number, running: boolean): void {
    const r = [...this.#records.values()].find((r) => r.inst === inst);
    if (!r) return;
    r.s.overruns++;
    const deadline = this.#opts.deadlineMs(r.manifest.limits.fuel_per_message);
    log.warn(
      "module {name} held sandbox worker {lane} for {ms} ms{still}, past its deadline of {deadline} ms",
      {
        name: r.manifest.name,
        lane,
        ms: heldMs,
        still: running ? " and still runs" : "",
        deadline: Math.round(deadline),
      },
    );
    this.#toProbation(r);
  }

  /** Moves `r` to the probation Worker, unless it is there already. */
  #toProbation(r: ModuleRecord): void {
    const probation = this.#opts.workers;
    if (r.lane === probation || this.#records.get(r.manifest.name) !== r) return;
    log.warn("module {name} moves to the probation worker", { name: r.manifest.name });
    this.#reload(r, probation, "move to the probation worker");
  }

  #fault(r: ModuleRecord, error: { kind: FaultKind; message: string }): void {
    this.#quarantine.fault(r, error);
    // A module that used up its fuel may do it again, holding its Worker for the whole
    // budget each time: it goes on in the probation Worker, away from well-behaved modules.
    // (A fault discards the instance anyway, so the move costs it nothing.)
    if (error.kind === "fuel") this.#toProbation(r);
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
