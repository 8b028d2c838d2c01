/**
 * ModuleHost: the installed modules of one runtime, and what the API and the
 * runtime ask of them: start (what is installed on disk, then `preload`),
 * install and swap, remove, status, a message delivered now, stop.
 *
 * It composes the parts that do the work: which modules are installed in
 * which state (`installed_modules.ts`), installs and swaps (`installer.ts`),
 * the Workers and each module's place in them (`lanes.ts`, `pool.ts`),
 * durable delivery (each module reads the reading log and the message log
 * through its own cursors, `feed.ts`, into the Workers, `dispatch.ts`), the
 * outcomes of calls (`outcomes.ts`) with their effects committed as one per
 * message (`effects.ts`), fault accounting with quarantine and back-off
 * (`quarantine.ts`). Modules run in a small pool of Workers without
 * permissions, many instances per Worker; the fuel rewriter bounds every
 * guest call. This thread keeps the queues, the statistics and every
 * privilege.
 *
 * @module
 */

import { join } from "node:path";
import { formatBytes, getLogger } from "../lib/mod.ts";
import {
  type Bus,
  type GroupCommit,
  type Metrics,
  ReadingLog,
  type RowsListener,
} from "../runtime/mod.ts";
import {
  ModuleFailedError,
  ModuleMemoryBudgetError,
  ModuleQuarantinedError,
  ModuleValidationError,
  PayloadTooLargeError,
} from "./errors.ts";
import { loadedManifestParser, manifestParser } from "./_manifest_parser.ts";
import { ValidatorWorker } from "./validator.ts";
import type { Manifest } from "./manifest.ts";
import type { CallOutcome } from "./instance.ts";
import { SqliteKv, type StoreLike } from "./kv.ts";
import { ModuleStore } from "./persist.ts";
import type { WireOutcome } from "./pool_protocol.ts";
import type { ModuleStatus } from "./module_record.ts";
import { type ModuleMetrics, registerModuleMetrics } from "./module_metrics.ts";
import { Quarantine } from "./quarantine.ts";
import { Dispatcher } from "./dispatch.ts";
import type { NnPoolLink } from "./nn/service.ts";
import { CursorStore } from "./cursors.ts";
import { MessageLog } from "./message_log.ts";
import { Effects } from "./effects.ts";
import { Feeder, type FeedReadings } from "./feed.ts";
import { callDeadlineMs } from "./costs.ts";
import { InstalledModules } from "./installed_modules.ts";
import { Installer } from "./installer.ts";
import { Lanes } from "./lanes.ts";
import { Outcomes } from "./outcomes.ts";
import { KeyedLock, KeyedSlots } from "./_keyed_lock.ts";
import { moduleMemoryBudget } from "./manifest_limits.ts";

const log = getLogger(["edged", "modules"]);

/**
 * Messages API calls one module may have at its Worker at once: enough to
 * keep the Worker fed while other modules' batches run there (one at a time,
 * a client sending every 20 ms fell behind a busy Worker), few enough that a
 * module past its fault limit runs no more than this many before the rest
 * are refused.
 */
const DELIVERY_SLOTS = 4;

/**
 * Message-log bytes every module has passed that are deleted without waiting
 * for 1,000 rows (or a quarter of `messageLogBytes`, when that is less).
 */
const PRUNE_BYTES = 8 << 20;

/** The reading log as the module host reads it. */
export type HostReadings = FeedReadings & {
  addRowsListener(listener: RowsListener): () => void;
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
   * Payload bytes the running modules' queues hold together: each module's
   * share is this over how many run, at most `queueBytes`. @default 64 MiB
   */
  queueBytesTotal?: number;
  /**
   * Log entries a module may fall behind (in the reading log or the message
   * log) before it skips ahead to half of it, counting what it skipped.
   * @default 100000
   */
  maxLag?: number;
  /**
   * Bytes (topics and payloads) the message log may hold for modules that are
   * behind; past it, the furthest behind skip ahead until it holds half, counting
   * what they skipped. @default 268435456
   */
  messageLogBytes?: number;
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
  /**
   * Memory the installed modules may use together: the sum of their
   * manifests' `limits.memory_bytes`. An install past it is refused with
   * {@linkcode ModuleMemoryBudgetError}; modules already installed load
   * whatever the budget. @default half of the device's memory
   * (`moduleMemoryBudget`, manifest_limits.ts)
   */
  memoryBudgetBytes?: number;
  /** Registry for per-module gauges (scraped at /metrics). */
  metrics?: Metrics;
  /**
   * The module histograms, registered already (with `metrics`) by whoever
   * built the host later than the registry's metrics (`LazyModuleHost`,
   * `component.ts`); the host then registers none of its own.
   */
  moduleMetrics?: ModuleMetrics;
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
    & Required<
      Omit<ModuleHostOptions, "preload" | "metrics" | "moduleMetrics" | "nn" | "readings">
    >
    & Pick<ModuleHostOptions, "nn">
    & { preload: string[] };
  #stopped = false;
  /** Each installed (or installing) module's claim on the memory budget: its `limits.memory_bytes`. */
  readonly #memory = new Map<string, number>();
  readonly #installed: InstalledModules;
  readonly #kv: SqliteKv;
  readonly #disk: ModuleStore;
  readonly #lock = new KeyedLock();
  /** Where modules are validated: a Worker, so a large one does not hold this thread. */
  readonly #validator = new ValidatorWorker();
  /**
   * Messages sent to one module through {@linkcode deliver}: at most
   * {@linkcode DELIVERY_SLOTS} at its Worker at a time; the others wait here,
   * so each sees what those before it did to the module (quarantine, a move to
   * the probation Worker) instead of all running back to back on its Worker.
   */
  readonly #deliveries = new KeyedSlots(DELIVERY_SLOTS);
  readonly #quarantine: Quarantine;
  readonly #dispatch: Dispatcher;
  readonly #commits: GroupCommit;
  readonly #cursors: CursorStore;
  readonly #readings: HostReadings;
  readonly #messages: MessageLog;
  readonly #effects: Effects;
  readonly #feeder: Feeder;
  readonly #lanes: Lanes;
  readonly #outcomes: Outcomes;
  readonly #installer: Installer;
  readonly #unlisten: () => void;
  #ready = false;
  #metrics?: ModuleMetrics;

  /**
   * A host for `options`, the manifest schema loaded first when modules are
   * installed (the constructor reads their manifests at once); with none
   * installed it loads with the first manifest to read.
   */
  static async open(options: ModuleHostOptions): Promise<ModuleHost> {
    if (new ModuleStore(join(options.dataDir, "modules")).manifests().length > 0) {
      await manifestParser();
    }
    return new ModuleHost(options);
  }

  constructor(options: ModuleHostOptions) {
    this.#opts = {
      queueCapacity: 256,
      queueBytes: 8 << 20,
      queueBytesTotal: 64 << 20,
      maxLag: 100_000,
      messageLogBytes: 256 << 20,
      faultLimit: 3,
      quarantineMs: 1000,
      logLinesPerSecond: 20,
      threadMsPerSecond: 50,
      meter: true,
      workers: 2,
      preload: [],
      deadlineMs: callDeadlineMs,
      ...options,
      memoryBudgetBytes: moduleMemoryBudget(options.memoryBudgetBytes),
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
    const installed = this.#installed = new InstalledModules(this.#cursors.loadAll());
    this.#readings = options.readings ??
      new ReadingLog(store as ConstructorParameters<typeof ReadingLog>[0], { forward: false });
    this.#messages = new MessageLog(store, {
      wanted: (msg) => installed.wanted(msg),
      onDurable: (rows) => this.#feeder.onMessages(rows),
      idsAbove: installed.dormantMessagesAbove(),
    });
    this.#disk = new ModuleStore(join(options.dataDir, "modules"));
    const manifests = this.#disk.manifests();
    // The schema is loaded by now when there are manifests to read
    // (ModuleHost.open, or an import of manifest.ts); with none, it never loads.
    const parseManifest = manifests.length > 0 ? loadedManifestParser() : undefined;
    if (manifests.length > 0 && parseManifest === undefined) {
      throw new Error(
        "the manifest schema is not loaded: build the host with ModuleHost.open() (or import sandbox/manifest.ts)",
      );
    }
    for (const { name, manifestJson } of manifests) {
      let version = "unknown";
      let sha256 = "";
      let subscribe: string[] = [];
      try {
        const m = parseManifest!(manifestJson);
        version = m.version;
        sha256 = m.sha256 ?? "";
        subscribe = m.subscribe;
      } catch { /* start() reports it */ }
      const c = installed.dormantCursor(name);
      // Until it runs, it keeps what it has not read yet.
      installed.markLoading(
        name,
        { version, sha256, subscribe, message: "loading", at: new Date() },
        c ? this.#readings.hold(c.readings) : undefined,
      );
    }
    this.#quarantine = new Quarantine(this.#opts.faultLimit, this.#opts.quarantineMs);
    this.#effects = new Effects(this.#commits, this.#kv, this.#cursors, {
      current: (r, gen) => installed.isCurrent(r, gen),
      persist: (msg) => void this.#opts.bus.persist(msg),
      durable: (effects, cursors) => {
        this.#lanes.committed();
        this.#outcomes.durable(effects, cursors);
      },
      failed: (records, err) => this.#lanes.commitFailed(records, err),
      afterWrite: () => this.#pruneMessages(),
    });
    this.#feeder = new Feeder({
      readings: this.#readings,
      messages: this.#messages,
      queueCapacity: this.#opts.queueCapacity,
      queueBytes: this.#opts.queueBytes,
      queueBytesTotal: this.#opts.queueBytesTotal,
      maxLag: this.#opts.maxLag,
      messageLogBytes: this.#opts.messageLogBytes,
      records: () => installed.records(),
      running: () => installed.runningCount,
      touch: (r) => this.#effects.touch(r),
      kick: (r) => this.#dispatch.kick(r.lane),
    });
    this.#unlisten = this.#readings.addRowsListener((rows, firstId) =>
      this.#feeder.onReadings(rows, firstId)
    );
    this.#opts.bus.addSink(this.#messages.sink);
    this.#lanes = new Lanes({
      workers: this.#opts.workers,
      logLinesPerSecond: this.#opts.logLinesPerSecond,
      threadMsPerSecond: this.#opts.threadMsPerSecond,
      nn: this.#opts.nn,
      deadlineMs: this.#opts.deadlineMs,
      kv: this.#kv,
      installed,
      lock: this.#lock,
      commits: this.#commits,
      effects: this.#effects,
    }, {
      stopped: () => this.#stopped,
      kick: (lane) => this.#dispatch.kick(lane),
      fault: (r, error) => this.#outcomes.fault(r, error),
      overrun: (lane, inst, heldMs, running) => this.#outcomes.overrun(lane, inst, heldMs, running),
    });
    this.#dispatch = new Dispatcher({
      stopped: () => this.#stopped,
      heldMs: () => this.#lanes.heldUntil - performance.now(),
      pool: () => this.#lanes.pool,
      recordsIn: (lane) => installed.inLane(lane),
      release: (r) => this.#quarantine.release(r),
      refill: (r) => this.#feeder.refill(r),
      apply: (r, inst, out, d, gen) => this.#outcomes.apply(r, inst, out, d, gen),
      lost: (r, ds, gen, err) => {
        if (!installed.isCurrent(r, gen)) return;
        r.requeue(ds);
        this.#outcomes.fault(r, {
          kind: "host",
          message: `${ds.length} message(s) interrupted, delivered again: ${err.message}`,
        });
      },
    });
    if (options.moduleMetrics) {
      this.#metrics = options.moduleMetrics;
    } else if (options.metrics) {
      this.#metrics = registerModuleMetrics(
        options.metrics,
        () => this.names().map((n) => this.status(n)),
        () => ({ budget: this.memoryBudget, claimed: this.memoryClaimed }),
      );
    }
    this.#outcomes = new Outcomes({
      installed,
      quarantine: this.#quarantine,
      effects: this.#effects,
      feeder: this.#feeder,
      bus: this.#opts.bus,
      metrics: this.#metrics,
      deadlineMs: this.#opts.deadlineMs,
      toProbation: (r) => this.#lanes.toProbation(r),
      restart: (r, why) => this.#lanes.restart(r, why),
    });
    this.#installer = new Installer({
      meter: this.#opts.meter,
      quarantineMs: this.#opts.quarantineMs,
      installed,
      lanes: this.#lanes,
      disk: this.#disk,
      feeder: this.#feeder,
      commits: this.#commits,
      cursors: this.#cursors,
      effects: this.#effects,
      kick: (lane) => this.#dispatch.kick(lane),
      validate: (bytes, manifest, options) => this.#validator.validate(bytes, manifest, options),
    });
  }

  /** Deletes message-log rows every module has passed (inside the group transaction). */
  #pruneMessages(): void {
    const floor = this.#installed.messagesFloor(this.#messages.durableId);
    if (
      floor - this.#messages.prunedId >= 1000 || floor === this.#messages.durableId ||
      this.#messages.bytesThrough(floor) >= Math.min(PRUNE_BYTES, this.#opts.messageLogBytes / 4)
    ) this.#messages.pruneTo(floor);
  }

  /** Loads installed modules, then preloads; resolves once all are running. */
  async start(): Promise<void> {
    const stored = this.#disk.loadAll();
    // Claimed before they load (in one synchronous step), so that an install meanwhile counts them.
    const parse = stored.some((m) => !("error" in m)) ? await manifestParser() : undefined;
    for (const m of stored) {
      if (!parse || "error" in m) continue;
      try {
        this.#memory.set(m.name, parse(m.manifestJson).limits.memory_bytes);
      } catch { /* it will not load either: loadInstalled says why */ }
    }
    for (const m of stored) {
      try {
        await this.#installer.loadInstalled(m);
      } finally {
        this.#installed.loaded(m.name);
        if (this.#installed.get(m.name)?.state === "failed") this.#memory.delete(m.name);
      }
    }
    this.#installed.loadingDone();
    const claimed = this.memoryClaimed;
    if (claimed > this.#opts.memoryBudgetBytes) {
      log.warning(
        "the installed modules may use {claimed} of memory, more than the budget of {budget} (modules.memory_budget_bytes): they run, but no install that adds to it is taken",
        { claimed: formatBytes(claimed), budget: formatBytes(this.#opts.memoryBudgetBytes) },
      );
    }
    for (const dir of this.#opts.preload) {
      try {
        const manifestJson = await Deno.readTextFile(join(dir, "manifest.json"));
        const manifest = (await manifestParser())(manifestJson);
        if (this.#installed.runsOrFailed(manifest.name)) continue;
        await this.install(manifestJson, await Deno.readFile(join(dir, "module.wasm")));
        log.info("preloaded module {name} from {dir}", { name: manifest.name, dir });
      } catch (err) {
        log.error("preloading {dir} failed: {error}", { dir, error: String(err) });
      }
    }
    this.#ready = true;
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
    for (const r of this.#installed.records()) this.#feeder.detach(r);
    this.#installed.clear();
    this.#lanes.terminate();
    this.#validator.stop();
    this.#ready = false;
    await this.#commits.flushed();
    this.#effects.close();
    this.#messages.close();
  }

  /** Reasons the host is not ready (empty once started). */
  notReady(): string[] {
    return this.#ready ? [] : ["modules: installed modules are still loading"];
  }

  /**
   * Validates, persists and runs a module; an installed version of the same
   * name keeps running until the new one is ready, then is replaced in one step.
   * With `urlName` (the API's `PUT /modules/{name}`), a manifest naming another
   * module is refused too.
   * @throws {ModuleValidationError} with every reason when refused: the
   * manifest's, and, when the manifest is refused, what is wrong with the
   * module whatever its manifest says.
   */
  install(manifestInput: unknown, bytes: Uint8Array, urlName?: string): Promise<ModuleStatus> {
    const parseManifest = loadedManifestParser();
    // First manifest of an edged that started without any: load the schema.
    if (parseManifest === undefined) {
      return manifestParser().then(() => this.install(manifestInput, bytes, urlName));
    }
    const named = (manifestInput as { name?: unknown } | null)?.name;
    const misnamed = urlName !== undefined && named !== urlName
      ? `manifest name: ${
        (JSON.stringify(named) ?? "undefined").slice(0, 80)
      } differs from the URL name "${urlName}"`
      : undefined;
    let manifest: Manifest;
    try {
      manifest = parseManifest(manifestInput);
    } catch (err) {
      if (!(err instanceof ModuleValidationError)) throw err;
      const reasons = [...(misnamed ? [misnamed] : []), ...err.reasons];
      // What is wrong with the module whatever its manifest says is listed too.
      return this.#validator.moduleOnly(bytes).then((more) => {
        throw new ModuleValidationError([...reasons, ...more]);
      });
    }
    if (misnamed) {
      // Refused whatever else: checked all the same, so the answer lists every reason.
      return this.#validator.validate(bytes, manifest).then(
        () => Promise.reject(new ModuleValidationError([misnamed])),
        (err) => {
          if (!(err instanceof ModuleValidationError)) throw err;
          throw new ModuleValidationError([misnamed, ...err.reasons]);
        },
      );
    }
    return this.#lock.run(manifest.name, async () => {
      const { name } = manifest;
      const before = this.#memory.get(name);
      this.#claimMemory(name, manifest.limits.memory_bytes);
      try {
        const validated = await this.#installer.activate(manifest, bytes, true);
        return this.status(validated.manifest.name);
      } catch (err) {
        // The version it would have replaced (if any) keeps running: its claim stands.
        if (before === undefined || this.#installed.get(name) === undefined) {
          this.#memory.delete(name);
        } else this.#memory.set(name, before);
        throw err;
      }
    });
  }

  /** What is wrong with `bytes` as a module whatever its manifest says (on the validator Worker). */
  checkModule(bytes: Uint8Array): Promise<string[]> {
    return this.#validator.moduleOnly(bytes);
  }

  /** The memory budget of the modules (see {@linkcode ModuleHostOptions.memoryBudgetBytes}). */
  get memoryBudget(): number {
    return this.#opts.memoryBudgetBytes;
  }

  /** What the installed modules may use together: the sum of their `limits.memory_bytes`. */
  get memoryClaimed(): number {
    let sum = 0;
    for (const bytes of this.#memory.values()) sum += bytes;
    return sum;
  }

  /** Claims `bytes` of the budget for module `name` (in place of its claim so far), or throws. */
  #claimMemory(name: string, bytes: number): void {
    const others = this.memoryClaimed - (this.#memory.get(name) ?? 0);
    if (others + bytes > this.#opts.memoryBudgetBytes) {
      throw new ModuleMemoryBudgetError(name, bytes, others, this.#opts.memoryBudgetBytes);
    }
    this.#memory.set(name, bytes);
  }

  /**
   * Unloads and deletes a module and its cursors, and its kv state unless
   * `keepState`. Messages already sent to its Worker finish there without kv
   * or sensor answers (EdgeError.IO) and commit nothing; queued ones are
   * dropped. Installed again later, it is a new module (see `backlog`).
   */
  remove(name: string, { keepState = false }: { keepState?: boolean } = {}): Promise<void> {
    return this.#lock.run(name, async () => {
      const r = this.#installed.removable(name);
      // Revoked at once: messages still in its Worker get no more kv or sensor answers.
      if (r?.inst !== undefined) void this.#lanes.pool?.unload(r.inst, { revoke: true });
      if (r) {
        r.gen++;
        this.#effects.drop(r);
        this.#feeder.detach(r);
      }
      this.#installed.delete(name);
      this.#memory.delete(name);
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
    return this.#installed.names();
  }

  /** Statistics of one module. @throws {ModuleNotFoundError} */
  status(name: string): ModuleStatus {
    return this.#installed.status(
      name,
      (r) =>
        r.status(r.manifest.grants.kv ? this.#kv.usage(name) : 0, {
          readings: this.#readings.durableId,
          messages: this.#messages.durableId,
        }),
    );
  }

  /**
   * Delivers one message now, bypassing the queue and the rate limit, and
   * answers what the module did once its effects are durable
   * (`runtime/commit.ts`: after the transaction's WAL sync).
   * @throws {ModuleLoadingError} while edged starts and the module is not loaded yet.
   * @throws {ModuleEffectsRefusedError} when the runtime refused its effects at
   *   commit (over its kv grant): nothing of the message was kept.
   */
  async deliver(name: string, topic: string, payload: Uint8Array): Promise<CallOutcome> {
    const limit = this.#installed.deliverable(name).manifest.limits.max_payload_bytes;
    if (payload.length > limit) throw new PayloadTooLargeError(payload.length, limit);
    // The turn ends once the call's outcome is booked (a fault counted, a quarantine begun),
    // not once its effects are durable: the next message need not wait for the disk.
    const { out, durable } = await this.#deliveries.run(
      name,
      () => this.#deliverNow(name, topic, payload),
    );
    await durable;
    const { status, published, logs, fuelUsed, error } = out;
    return { status, published, logs, fuelUsed, error };
  }

  /**
   * {@linkcode deliver}, in its turn: the module as it is now (a swap, a
   * fault, a move). Answers the outcome, booked, and when its effects are durable.
   */
  async #deliverNow(
    name: string,
    topic: string,
    payload: Uint8Array,
  ): Promise<{ out: WireOutcome; durable: Promise<void> }> {
    const r = this.#installed.deliverable(name);
    const limit = r.manifest.limits.max_payload_bytes;
    if (payload.length > limit) throw new PayloadTooLargeError(payload.length, limit);
    this.#quarantine.release(r);
    if (r.state === "quarantined") throw new ModuleQuarantinedError(name, r.quarantinedUntilMs);
    // Moving to another Worker (see Lanes.reload): wait for it.
    if (r.inst === undefined) await this.#lock.run(name, () => Promise.resolve());
    const inst = r.inst;
    if (inst === undefined) throw new ModuleFailedError(name, "it could not be loaded again");
    const gen = r.gen;
    r.inFlight++;
    let out: WireOutcome;
    try {
      [out] = (await this.#lanes.workers().run(r.lane, [{ inst, topic, payload }])) as [
        WireOutcome,
      ];
    } finally {
      r.inFlight--;
    }
    const durable = new Promise<void>((resolve, reject) =>
      this.#outcomes.apply(r, inst, out, undefined, gen, { resolve, reject })
    );
    // Settled by the caller; until then a refusal is not "unhandled".
    durable.catch(() => {});
    return { out, durable };
  }
}
