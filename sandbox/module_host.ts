/**
 * ModuleHost: the lifecycle of installed modules (load, swap, unload),
 * durable delivery (each module reads the reading log and the message log
 * through its own cursors, `feed.ts`, and its effects for each message commit
 * as one, `effects.ts`), fault accounting with quarantine and back-off, and
 * per-module statistics.
 *
 * Modules run in a small pool of Workers without permissions, many instances
 * per Worker (`pool.ts`); the fuel rewriter bounds every guest call. This
 * thread keeps the queues, the statistics and every privilege.
 *
 * @module
 */

import { join } from "node:path";
import { topicMatches } from "../lib/mod.ts";
import { getLogger } from "@logtape/logtape";
import {
  type Bus,
  type BusMessage,
  type GroupCommit,
  type Metrics,
  ReadingLog,
  type StoredReading,
} from "../runtime/mod.ts";
import {
  ModuleFailedError,
  ModuleFault,
  ModuleLoadingError,
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
import { SqliteKv, type StoreLike } from "./kv.ts";
import { ModuleStore } from "./persist.ts";
import { WorkerPool } from "./pool.ts";
import type { WireOutcome } from "./pool_protocol.ts";
import {
  type Delivery,
  type FailedModule,
  failedStatus,
  ModuleRecord,
  type ModuleStatus,
} from "./module_record.ts";
import { type ModuleMetrics, registerModuleMetrics } from "./module_metrics.ts";
import { Quarantine } from "./quarantine.ts";
import { Dispatcher } from "./dispatch.ts";
import type { NnPoolLink } from "./nn/service.ts";
import { type Cursor, CursorStore } from "./cursors.ts";
import { type LoggedMessage, MessageLog } from "./message_log.ts";
import { type Effect, Effects } from "./effects.ts";
import { Feeder, type FeedReadings } from "./feed.ts";
import { callDeadlineMs } from "./costs.ts";

const log = getLogger(["edged", "modules"]);
const LEVELS = ["debug", "info", "warning", "error"] as const;

/** The reading log as the module host reads it. */
export type HostReadings = FeedReadings & {
  addRowsListener(listener: (rows: StoredReading[]) => void): () => void;
};

/** Options of {@link ModuleHost}. */
export interface ModuleHostOptions {
  /** Installed modules are kept in `<dataDir>/modules`. */
  dataDir: string;
  bus: Pick<Bus, "addSink" | "deliver" | "persist">;
  /** Where kv state, cursors and the message log live (the runtime's Store). */
  store: StoreLike & { commits: GroupCommit };
  /**
   * The reading log modules read readings from. Default: a log of their own
   * in `store` (tests; a runtime passes its one reading log).
   */
  readings?: HostReadings;
  /** Deliveries a module holds in memory; beyond, they wait in their log. @default 256 */
  queueCapacity?: number;
  /** Payload bytes a module holds in memory (one message always fits); beyond, they wait. @default 8 MiB */
  queueBytes?: number;
  /**
   * Log entries a module may fall behind (in the reading log or the message
   * log) before it skips ahead to half of it, counting what it skipped.
   * @default 100000
   */
  maxLag?: number;
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
    & Required<Omit<ModuleHostOptions, "preload" | "metrics" | "nn" | "readings">>
    & Pick<ModuleHostOptions, "nn">
    & { preload: string[] };
  #pool: WorkerPool | undefined;
  #stopped = false;
  readonly #records = new Map<string, ModuleRecord>();
  /** Installed modules that could not be loaded at start (state "failed"). */
  readonly #failed = new Map<string, FailedModule>();
  /** Installed modules not loaded yet while the host starts (state "loading"). */
  readonly #loading = new Map<string, FailedModule & { subscribe: string[] }>();
  readonly #kv: SqliteKv;
  readonly #disk: ModuleStore;
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #quarantine: Quarantine;
  readonly #dispatch: Dispatcher;
  readonly #commits: GroupCommit;
  readonly #cursors: CursorStore;
  /** Cursors stored for modules that are not running (loading, failed). */
  readonly #dormant: Map<string, Cursor>;
  readonly #readings: HostReadings;
  readonly #messages: MessageLog;
  readonly #effects: Effects;
  readonly #feeder: Feeder;
  readonly #unlisten: () => void;
  readonly #dormantHolds = new Map<string, { release(): void }>();
  #ready = false;
  #metrics?: ModuleMetrics;

  constructor(options: ModuleHostOptions) {
    this.#opts = {
      queueCapacity: 256,
      queueBytes: 8 << 20,
      maxLag: 100_000,
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
    if (!Number.isInteger(this.#opts.maxLag) || this.#opts.maxLag < 1) {
      throw new RangeError(`maxLag must be a positive integer, got ${this.#opts.maxLag}`);
    }
    if (!Number.isInteger(this.#opts.workers) || this.#opts.workers < 1) {
      throw new RangeError(`workers must be a positive integer, got ${this.#opts.workers}`);
    }
    const store = options.store;
    this.#commits = store.commits;
    this.#kv = new SqliteKv(store, this.#commits.db);
    this.#cursors = new CursorStore(store, this.#commits.db);
    this.#dormant = this.#cursors.loadAll();
    this.#readings = options.readings ??
      new ReadingLog(store as ConstructorParameters<typeof ReadingLog>[0], { forward: false });
    this.#messages = new MessageLog(store, {
      wanted: (msg) => this.#wanted(msg),
      onDurable: (rows) => this.#onMessages(rows),
      idsAbove: Math.max(0, ...[...this.#dormant.values()].map((c) => c.messages)),
    });
    this.#disk = new ModuleStore(join(options.dataDir, "modules"));
    for (const { name, manifestJson } of this.#disk.manifests()) {
      let version = "unknown";
      let sha256 = "";
      let subscribe: string[] = [];
      try {
        const m = parseManifest(manifestJson);
        version = m.version;
        sha256 = m.sha256 ?? "";
        subscribe = m.subscribe;
      } catch { /* start() reports it */ }
      this.#loading.set(name, { version, sha256, subscribe, message: "loading", at: new Date() });
      const c = this.#dormant.get(name);
      // Until it runs, it keeps what it has not read yet.
      if (c) this.#dormantHolds.set(name, this.#readings.hold(c.readings));
    }
    this.#quarantine = new Quarantine(this.#opts.faultLimit, this.#opts.quarantineMs);
    this.#effects = new Effects(this.#commits, this.#kv, this.#cursors, {
      current: (r, gen) => this.#records.get(r.manifest.name) === r && r.gen === gen,
      persist: (msg) => void this.#opts.bus.persist(msg),
      durable: (effects, cursors) => this.#durable(effects, cursors),
      failed: (records, err) => this.#commitFailed(records, err),
      afterWrite: () => this.#pruneMessages(),
    });
    this.#feeder = new Feeder({
      readings: this.#readings,
      messages: this.#messages,
      queueCapacity: this.#opts.queueCapacity,
      queueBytes: this.#opts.queueBytes,
      maxLag: this.#opts.maxLag,
      records: () => this.#records.values(),
      touch: (r) => this.#effects.touch(r),
      kick: (r) => this.#dispatch.kick(r.lane),
    });
    this.#unlisten = this.#readings.addRowsListener((rows) => this.#feeder.onReadings(rows));
    this.#opts.bus.addSink(this.#messages.sink);
    this.#dispatch = new Dispatcher({
      stopped: () => this.#stopped,
      pool: () => this.#pool,
      recordsIn: (lane) => [...this.#records.values()].filter((r) => r.lane === lane),
      release: (r) => this.#quarantine.release(r),
      refill: (r) => this.#feeder.refill(r),
      apply: (r, inst, out, d, gen) => this.#apply(r, inst, out, d, gen),
      lost: (r, ds, gen, err) => {
        if (r.gen !== gen || this.#records.get(r.manifest.name) !== r) return;
        r.requeue(ds);
        this.#fault(r, {
          kind: "host",
          message: `${ds.length} message(s) interrupted, delivered again: ${err.message}`,
        });
      },
    });
    if (options.metrics) {
      this.#metrics = registerModuleMetrics(
        options.metrics,
        () => this.names().map((n) => this.status(n)),
      );
    }
  }

  /** Whether some running module other than its publisher subscribes to `msg` (the message log keeps it). */
  #wanted(msg: BusMessage): boolean {
    for (const r of this.#records.values()) {
      if (msg.source !== `module:${r.manifest.name}` && r.wants(msg.topic)) return true;
    }
    for (const [name, l] of this.#loading) {
      if (msg.source === `module:${name}` || this.#records.has(name)) continue;
      if (l.subscribe.some((f) => topicMatches(f, msg.topic))) return true;
    }
    return false;
  }

  #onMessages(rows: LoggedMessage[]): void {
    this.#feeder.onMessages(rows);
  }

  /** Deletes message-log rows every module has passed (inside the group transaction). */
  #pruneMessages(): void {
    let floor = this.#messages.durableId;
    for (const r of this.#records.values()) floor = Math.min(floor, r.streams.messages.committed);
    for (const [name, c] of this.#dormant) {
      if (this.#loading.has(name)) floor = Math.min(floor, c.messages);
    }
    if (floor - this.#messages.prunedId >= 1000 || (floor === this.#messages.durableId)) {
      this.#messages.pruneTo(floor);
    }
  }

  /** Loads installed modules, then preloads; resolves once all are running. */
  async start(): Promise<void> {
    for (const stored of this.#disk.loadAll()) {
      try {
        await this.#startOne(stored);
      } finally {
        // Running, it holds its rows itself; failed, it holds none (it resumes
        // from its cursor once fixed, and what was pruned meanwhile is counted lost).
        this.#loading.delete(stored.name);
        this.#dormantHolds.get(stored.name)?.release();
        this.#dormantHolds.delete(stored.name);
      }
    }
    this.#loading.clear();
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

  async #startOne(stored: ReturnType<ModuleStore["loadAll"]>[number]): Promise<void> {
    {
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
        return;
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
  }

  #markFailed(name: string, version: string, sha256: string, message: string): void {
    this.#failed.set(name, { version, sha256, message, at: new Date() });
  }

  /**
   * Stops delivering: the Workers stop, effects already staged commit.
   * Messages in flight commit nothing; they are delivered again after the
   * next start, from the modules' cursors.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#dispatch.stop();
    this.#unlisten();
    for (const r of this.#records.values()) this.#feeder.detach(r);
    for (const h of this.#dormantHolds.values()) h.release();
    this.#dormantHolds.clear();
    this.#records.clear();
    this.#pool?.terminate();
    this.#pool = undefined;
    this.#ready = false;
    await this.#commits.flushed();
    this.#effects.close();
    this.#messages.close();
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
      // Its effects so far are in the kv usage the new instance starts from.
      await this.#commits.flushed();
      if (this.#records.get(r.manifest.name) !== r || r.inst !== undefined) return;
      try {
        const loaded = await this.#workers().load(lane, r.validated);
        if (this.#records.get(r.manifest.name) !== r) {
          void this.#pool?.unload(loaded.inst);
          return;
        }
        r.inst = loaded.inst;
        r.memoryBytes = loaded.memoryBytes;
        if (loaded.kv) this.#effects.stage({ r, gen: r.gen, kv: loaded.kv, published: [] });
        this.#dispatch.kick(lane);
      } catch (err) {
        if (!this.#stopped) this.#fault(r, { kind: "host", message: `${what}: ${err}` });
      }
    }).catch(() => {});
  }

  /**
   * Throws away `r`'s queued and in-flight work and starts it again from its
   * committed cursors on a fresh instance: its kv as committed, its messages
   * from the logs (after a group transaction with its effects failed).
   */
  #restart(r: ModuleRecord, why: string): void {
    r.gen++;
    r.clearQueue();
    for (const s of [r.streams.readings, r.streams.messages]) s.next = s.committed;
    this.#kv.dropStaged(r.manifest.name);
    this.#fault(r, { kind: "host", message: why });
    if (this.#records.get(r.manifest.name) === r) this.#reload(r, r.lane, "restart");
  }

  #commitFailed(records: Set<ModuleRecord>, err: unknown): void {
    if (this.#stopped) return; // the store closed under a stopping host: nothing to redo
    log.error("committing module effects failed: {error}", { error: String(err) });
    for (const r of records) {
      if (this.#records.get(r.manifest.name) === r) {
        this.#restart(r, `its effects did not commit (${err}); starting over from its cursors`);
      }
    }
  }

  /** Effects of one group transaction are durable: they show now. */
  #durable(effects: Effect[], cursors: Map<ModuleRecord, { readings: number; messages: number }>) {
    const now = performance.timeOrigin + performance.now();
    for (const e of effects) {
      const r = e.r;
      const name = r.manifest.name;
      if (e.refused) {
        this.#fault(r, { kind: "host", message: `effects refused: ${e.refused}` });
        continue;
      }
      for (const p of e.published) {
        try {
          this.#opts.bus.deliver({ topic: p.topic, payload: p.payload, source: `module:${name}` });
          r.s.messages_out++;
        } catch (err) {
          log.error("bus refused {topic} from module {name}: {error}", {
            topic: p.topic,
            name,
            error: String(err),
          });
        }
      }
      if (e.d) {
        const ms = Math.max(0, now - e.d.at);
        r.observeLag(ms);
        (r.observeEffectLag ??= this.#metrics?.effectLag.series({ module: name }))?.(ms / 1000);
      }
    }
    for (const [r, pos] of cursors) {
      const s = r.streams;
      s.readings.committed = Math.max(s.readings.committed, pos.readings);
      s.messages.committed = Math.max(s.messages.committed, pos.messages);
      this.#feeder.committed(r);
    }
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
   * Unloads and deletes a module and its cursors, and its kv state unless
   * `keepState`. Messages already sent to its Worker finish there without kv
   * or sensor answers (EdgeError.IO) and commit nothing; queued ones are
   * dropped. Installed again later, it is a new module (see `backlog`).
   */
  remove(name: string, { keepState = false }: { keepState?: boolean } = {}): Promise<void> {
    return this.#serialised(name, async () => {
      const r = this.#records.get(name);
      if (!r && !this.#failed.has(name)) {
        if (this.#loading.has(name)) throw new ModuleLoadingError(name);
        throw new ModuleNotFoundError(name);
      }
      // Revoked at once: messages still in its Worker get no more kv or sensor answers.
      if (r?.inst !== undefined) void this.#pool?.unload(r.inst, { revoke: true });
      if (r) {
        r.gen++;
        this.#effects.drop(r);
        this.#feeder.detach(r);
      }
      this.#records.delete(name);
      this.#failed.delete(name);
      this.#dormant.delete(name);
      this.#disk.remove(name);
      if (!keepState) this.#kv.clear(name);
      this.#metrics?.callDuration.remove({ module: name });
      this.#metrics?.effectLag.remove({ module: name });
      await this.#commits.stage(() => this.#cursors.delete(name));
      log.info("module {name} removed", { name });
    });
  }

  /** Names of installed modules. */
  names(): string[] {
    return [
      ...new Set([...this.#records.keys(), ...this.#failed.keys(), ...this.#loading.keys()]),
    ].sort();
  }

  /** Statistics of one module. @throws {ModuleNotFoundError} */
  status(name: string): ModuleStatus {
    const r = this.#records.get(name);
    if (r) {
      return r.status(r.manifest.grants.kv ? this.#kv.usage(name) : 0, {
        readings: this.#readings.durableId,
        messages: this.#messages.durableId,
      });
    }
    const f = this.#failed.get(name);
    if (f) return failedStatus(name, f);
    const l = this.#loading.get(name);
    if (l) return failedStatus(name, l, "loading");
    throw new ModuleNotFoundError(name);
  }

  /**
   * Delivers one message now, bypassing the queue and the rate limit, and
   * answers what the module did once its effects are durable.
   * @throws {ModuleLoadingError} while edged starts and the module is not loaded yet.
   */
  async deliver(name: string, topic: string, payload: Uint8Array): Promise<CallOutcome> {
    const r = this.#records.get(name);
    if (!r) {
      const f = this.#failed.get(name);
      if (f) throw new ModuleFailedError(name, f.message);
      if (this.#loading.has(name)) throw new ModuleLoadingError(name);
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
    const gen = r.gen;
    r.inFlight++;
    let out: WireOutcome;
    try {
      [out] = (await this.#workers().run(r.lane, [{ inst, topic, payload }])) as [WireOutcome];
    } finally {
      r.inFlight--;
    }
    await new Promise<void>((resolve, reject) =>
      this.#apply(r, inst, out, undefined, gen, { resolve, reject })
    );
    const { status, published, logs, fuelUsed, error } = out;
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
    let loaded: Awaited<ReturnType<WorkerPool["load"]>>;
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
    // A module installed for the first time starts at the logs' end (or
    // `backlog` before it); its cursor is durable before anything is answered.
    let cursor = old ? undefined : this.#dormant.get(manifest.name);
    if (!old && !cursor) {
      const start = this.#feeder.startOf(manifest.backlog);
      try {
        await this.#commits.stage(() => this.#cursors.put(manifest.name, start));
      } catch (err) {
        void pool.unload(loaded.inst);
        throw err;
      }
      cursor = start;
    }
    if (this.#records.get(manifest.name) !== old) {
      // Replaced meanwhile (cannot happen while installs are serialised per name).
      void pool.unload(loaded.inst);
      throw new Error(`module ${manifest.name} changed while it was being installed`);
    }
    // The swap: everything below is synchronous. Messages already sent to the
    // Worker finish on the old instance (it is unloaded after them); queued
    // messages stay queued and go to the new version, which continues from
    // the same cursors.
    const r = old ?? new ModuleRecord(validated, this.#opts.quarantineMs, lane, cursor!);
    this.#dormant.delete(manifest.name);
    if (old) {
      if (old.inst !== undefined) void pool.unload(old.inst);
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
    this.#feeder.attach(r);
    if (loaded.kv) this.#effects.stage({ r, gen: r.gen, kv: loaded.kv, published: [] });
    // What waits in its queue or its logs goes now.
    this.#dispatch.kick(lane);
    log.info("module {name} {version} running ({sha})", {
      name: manifest.name,
      version: manifest.version,
      sha: validated.sha256.slice(0, 12),
    });
    return validated;
  }

  /** The regular Worker with the fewest modules (never the probation Worker). */
  #leastLoadedLane(): number {
    const load = new Array<number>(this.#opts.workers).fill(0);
    for (const r of this.#records.values()) if (r.lane < load.length) load[r.lane]++;
    return load.indexOf(Math.min(...load));
  }

  /**
   * Books one outcome: statistics and faults now; its effects (kv writes,
   * publications, the cursor past `d`) are staged for the next group
   * transaction and show once it is durable. A fault's effects are only the
   * cursor: the message was handled.
   */
  #apply(
    r: ModuleRecord,
    inst: number,
    out: WireOutcome,
    d: Delivery | undefined,
    gen: number,
    done?: Effect["done"],
  ): void {
    const name = r.manifest.name;
    (r.observeCall ??= this.#metrics?.callDuration.series({ module: name }))?.(out.ms / 1000);
    r.s.messages_in++;
    r.s.fuel_used += out.fuelUsed;
    r.s.last_fuel_used = out.fuelUsed;
    if (inst === r.inst) {
      r.memoryBytes = out.memoryBytes;
      r.logsDropped = out.logsDropped;
    }
    if (this.#records.get(r.manifest.name) !== r || r.gen !== gen) {
      done?.reject(new WorkerGoneError(r.lane, "restarted the module: its effects were not kept"));
      return;
    }
    const kv = out.error ? undefined : out.kv;
    const published = out.error ? [] : out.published;
    if (out.error) this.#fault(r, out.error);
    else this.#quarantine.ok(r);
    if (!d && !kv?.length && published.length === 0) {
      // A messages API call with nothing to commit (no cursor of its own): answered at once.
      done?.resolve();
      return;
    }
    this.#effects.stage({ r, gen, d, kv, published, done });
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
