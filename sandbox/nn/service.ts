/**
 * The runtime's side of WASI-NN: installed models (`store.ts`), the engine
 * (`engine.ts`), and the link between them and the sandbox's Worker pool.
 *
 * The engine starts when the first instance of a module granted `nn` loads
 * (or a model is installed, to validate it) and stops `idleStopMs` after the
 * last such instance is gone, so a device without models or without such
 * modules runs no engine and pays nothing for it. The engine holds only the
 * models some loaded instance is granted; a model installed again while in
 * use is replaced in the engine between two computations.
 *
 * @module
 */

import { join } from "node:path";
import { getLogger, sha256Hex } from "../../lib/mod.ts";
import { NS_PER_FUEL } from "../costs.ts";
import { CHANNEL_INITIAL_BYTES, DATA_OFFSET, markEngineDown, markEngineUp } from "./channel.ts";
import { EngineError, EngineStoppedError, MIN_ENGINE_MEMORY_BYTES, NnEngine } from "./engine.ts";
import { ModelInvalidError, ModelNotFoundError } from "./errors.ts";
import type { NnLinkInit } from "./link.ts";
import { MODEL_NAME_MESSAGE, MODEL_NAME_RE } from "./names.ts";
import { type ModelRecord, ModelStore } from "./store.ts";
import { isElementType } from "./tensors.ts";

const log = getLogger(["edged", "nn"]);

/** What the Worker pool needs from the engine's side (see `pool.ts`). */
export interface NnPoolLink {
  /**
   * Before instance `inst` of `module` loads in Worker `lane`: the engine
   * runs, holds the granted `models` that are installed, and knows the grant.
   * @returns the link to send the Worker first, when it has none yet.
   */
  admit(
    lane: number,
    inst: number,
    models: string[],
    module: string,
  ): Promise<NnLinkInit | undefined>;
  /** Instance `inst` is gone (unloaded, removed or lost with its Worker). */
  release(inst: number): void;
  /** Worker `lane` died: its link is gone. */
  laneGone(lane: number): void;
}

/** Options of {@link NnService}. */
export interface NnServiceOptions {
  /** Models live in `<dataDir>/models`. */
  dataDir: string;
  /** Cap of the engine's wasm memory. @default 268435456 (256 MiB) */
  memoryBytes?: number;
  /** Longest one `compute` may keep a guest waiting. @default 1000 */
  deadlineMs?: number;
  /** Fuel charged per millisecond of engine time. @default 1000000 (the unit of `costs.ts`) */
  fuelPerMs?: number;
  /** Element limit of a model's tensors unless its install sets one. @default 1048576 */
  maxElements?: number;
  /** Largest model file accepted. @default 134217728 (128 MiB) */
  maxModelBytes?: number;
  /** The engine stops this long after its last user. @default 60000 */
  idleStopMs?: number;
  /** Directory of the engine's files (default: embedded, else Deno's npm cache). */
  engineDir?: string;
  /**
   * After the engine died, it restarts at once the first time; a crash within
   * `restartMaxDelayMs` of its last start waits this long before restarting,
   * doubling with each further one. @default 1000
   */
  restartDelayMs?: number;
  /** Longest wait before a restart; a run this long without a crash ends the streak. @default 60000 */
  restartMaxDelayMs?: number;
}

/** The engine's state as the API shows it. */
export interface EngineStatus {
  /** `running` (or starting), `restarting` (it died: waiting to start, or serving again what it served), `stopped`. */
  state: "running" | "restarting" | "stopped";
  running: boolean;
  start_ms: number;
  heap_bytes: number;
  js_heap_bytes: number;
  models: string[];
  /** Times the engine died since the runtime started. */
  crashes: number;
  /** Times it was started again after dying. */
  restarts: number;
  last_crash: { at: string; reason: string } | null;
  /** Milliseconds until the next restart (0 unless `restarting` with a back-off). */
  restart_in_ms: number;
}

/** Options of {@link NnService.install}. */
export interface InstallModelOptions {
  /** A version label (a release's version). */
  version?: string;
  /** Element limit of this model's tensors. */
  maxElements?: number;
}

/** An installed model as the API shows it. */
export interface ModelStatus extends ModelRecord {
  /** Modules whose loaded instances are granted this model. */
  used_by: string[];
  /** Whether the engine holds it now. */
  loaded: boolean;
}

/** Largest element limit a model may be given (1 GiB of float32). */
export const MAX_ELEMENTS_CEILING = 256 * 1024 * 1024;
/** Largest channel buffer per sandbox Worker (the biggest request or answer). */
const CHANNEL_MAX_BYTES = DATA_OFFSET + 256 * 1024 * 1024;

/** Models, engine and pool link of one runtime. */
export class NnService implements NnPoolLink {
  readonly store: ModelStore;
  readonly engine: NnEngine;
  readonly #o: Required<Omit<NnServiceOptions, "engineDir">>;
  readonly #lanes = new Map<number, SharedArrayBuffer>();
  readonly #grants = new Map<number, { lane: number; models: string[]; module: string }>();
  /** Model name → sha256 of the version the engine holds. */
  readonly #loaded = new Map<string, string>();
  #queue: Promise<unknown> = Promise.resolve();
  #idle: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** Crash bookkeeping: counts, the streak of crashes soon after a start, the pending restart. */
  #crashes = 0;
  #restarts = 0;
  #lastCrash: { at: string; reason: string } | null = null;
  #streak = 0;
  #startedAt = 0;
  #restartAt = 0;
  #restartTimer: ReturnType<typeof setTimeout> | undefined;
  /** True while a restart serves the dead engine's lanes and grants again. */
  #restoring = false;

  constructor(options: NnServiceOptions) {
    this.#o = {
      memoryBytes: 256 * 1024 * 1024,
      deadlineMs: 1000,
      fuelPerMs: 1e6 / NS_PER_FUEL,
      maxElements: 1024 * 1024,
      maxModelBytes: 128 * 1024 * 1024,
      idleStopMs: 60_000,
      restartDelayMs: 1000,
      restartMaxDelayMs: 60_000,
      ...options,
    };
    if (this.#o.memoryBytes < MIN_ENGINE_MEMORY_BYTES) {
      throw new RangeError(
        `nn memory must be at least ${MIN_ENGINE_MEMORY_BYTES} bytes, got ${this.#o.memoryBytes}`,
      );
    }
    this.store = new ModelStore(join(options.dataDir, "models"));
    this.engine = new NnEngine({
      memoryBytes: this.#o.memoryBytes,
      engineDir: options.engineDir,
      onFatal: (why) => this.#recover(why),
    });
  }

  /** Runs `fn` after every model or grant operation before it. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => {});
    return next;
  }

  admit(
    lane: number,
    inst: number,
    models: string[],
    module: string,
  ): Promise<NnLinkInit | undefined> {
    return this.#serial(async () => {
      if (this.#stopped) throw new EngineError("the inference engine is stopped");
      clearTimeout(this.#idle);
      // While a restart waits out its back-off the instance loads all the same: its
      // lane is marked down (its calls answer busy) and the restart serves it.
      const waiting = this.#restartTimer !== undefined;
      if (!waiting) await this.#engineUp();
      let init: NnLinkInit | undefined;
      if (!this.#lanes.has(lane)) {
        const sab = new SharedArrayBuffer(CHANNEL_INITIAL_BYTES, {
          maxByteLength: CHANNEL_MAX_BYTES,
        });
        if (waiting) markEngineDown(sab);
        else await this.engine.attach(lane, sab);
        this.#lanes.set(lane, sab);
        init = { sab, deadlineMs: this.#o.deadlineMs, fuelPerMs: this.#o.fuelPerMs };
      }
      if (!waiting) {
        for (const name of models) await this.#ensureLoaded(name);
        await this.engine.grant(inst, lane, models);
      }
      this.#grants.set(inst, { lane, models, module });
      return init;
    });
  }

  /** Puts the installed version of `name` into the engine unless it holds it already. */
  async #ensureLoaded(name: string): Promise<void> {
    const record = await this.store.get(name);
    if (!record) return; // granted but not installed: load_by_name answers not_found
    if (this.#loaded.get(name) === record.sha256) return;
    const bytes = await this.store.bytes(name);
    if (!bytes) return;
    try {
      await this.engine.put(name, record.sha256, bytes, record.max_elements, record.cost ?? null);
      this.#loaded.set(name, record.sha256);
    } catch (err) {
      // An installed model that no longer loads (a smaller memory cap since): the
      // module still loads, its load_by_name answers not_found, and the log says why.
      if (!(err instanceof EngineError)) throw err;
      log.error("model {name} does not load into the engine: {error}", {
        name,
        error: err.message,
      });
    }
  }

  release(inst: number): void {
    if (!this.#grants.delete(inst)) return;
    void this.#serial(async () => {
      await this.engine.revoke(inst).catch(() => {});
      const used = new Set([...this.#grants.values()].flatMap((g) => g.models));
      for (const name of [...this.#loaded.keys()]) {
        if (used.has(name)) continue;
        this.#loaded.delete(name);
        await this.engine.drop(name).catch(() => {});
      }
      this.#idleCheck();
    });
  }

  laneGone(lane: number): void {
    if (!this.#lanes.delete(lane)) return;
    void this.#serial(() => this.engine.detach(lane).catch(() => {}));
  }

  /** Stops the engine once nothing uses it, after `idleStopMs`. */
  #idleCheck(): void {
    clearTimeout(this.#idle);
    if (this.#grants.size > 0 || !this.engine.running) return;
    this.#idle = setTimeout(() => {
      void this.#serial(() => {
        if (this.#grants.size === 0 && this.engine.running) {
          this.engine.stop("stopped: no module uses it");
          this.#lanes.clear();
          this.#loaded.clear();
          log.info("inference engine stopped: no loaded module is granted nn");
        }
        return Promise.resolve();
      });
    }, this.#o.idleStopMs);
  }

  /**
   * Starts the engine unless it runs, serving again what the last one served
   * (its lanes, the granted models, the grants). Runs in the service's queue.
   * @throws {EngineStoppedError} while a restart waits out its back-off.
   */
  async #engineUp(): Promise<void> {
    if (this.engine.running) return;
    const wait = this.#restartAt - performance.now();
    if (wait > 0) {
      throw new EngineStoppedError(`crashed; it restarts in ${Math.ceil(wait / 1000)} s`);
    }
    clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    const restart = this.#lanes.size > 0 || this.#grants.size > 0;
    this.#restoring = restart;
    try {
      await this.engine.start();
      this.#startedAt = performance.now();
      // The sandbox Workers keep their buffers: the new engine serves the same ones.
      for (const [lane, sab] of this.#lanes) {
        markEngineUp(sab);
        await this.engine.attach(lane, sab);
      }
      for (const [inst, g] of this.#grants) {
        for (const name of g.models) await this.#ensureLoaded(name);
        await this.engine.grant(inst, g.lane, g.models);
      }
    } finally {
      this.#restoring = false;
    }
    if (restart && this.#crashes > 0) {
      this.#restarts++;
      log.info("inference engine restarted ({n} after crashes)", { n: this.#restarts });
    }
  }

  /** The engine died (a wasm trap or abort in onnxruntime, its Worker gone): restart it, backing off. */
  #recover(why: string): void {
    this.#crashes++;
    this.#lastCrash = { at: new Date().toISOString(), reason: why };
    // Guests waiting on the dead engine are answered now; their next calls answer busy.
    for (const sab of this.#lanes.values()) markEngineDown(sab);
    this.#loaded.clear();
    if (this.#stopped || this.#grants.size === 0) {
      this.#lanes.clear(); // the next module granted nn starts a fresh engine
      log.error("inference engine {why}; it starts again when a module needs it", { why });
      return;
    }
    const delay = this.#scheduleRestart();
    log.error("inference engine {why} (crash {n}); restarting it in {delay} ms", {
      why,
      n: this.#crashes,
      delay,
    });
  }

  /**
   * Schedules the restart: at once after a crash that ends a run longer than
   * `restartMaxDelayMs`, else after `restartDelayMs`, doubled for each crash
   * in the streak, at most `restartMaxDelayMs`. @returns the delay.
   */
  #scheduleRestart(): number {
    const now = performance.now();
    const { restartDelayMs: base, restartMaxDelayMs: max } = this.#o;
    this.#streak = now - this.#startedAt < max ? this.#streak + 1 : 1;
    const delay = this.#streak <= 1 ? 0 : Math.min(max, base * 2 ** (this.#streak - 2));
    this.#restartAt = now + delay;
    clearTimeout(this.#restartTimer);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      void this.#serial(() => this.#engineUp()).catch((err) => {
        log.error("inference engine restart failed: {error}", { error: String(err) });
        // A crash during the restart scheduled the next one already.
        const pending = this.#restartTimer !== undefined;
        if (!pending && !this.#stopped && !this.engine.running && this.#grants.size > 0) {
          this.#scheduleRestart();
        }
      });
    }, delay);
    return delay;
  }

  /**
   * Validates `bytes` by creating a session, records the model's inputs and
   * outputs and installs it as `name`, replacing any earlier version (in the
   * engine too, between two computations, when a loaded module uses it).
   * @throws {ModelInvalidError} with the reason when refused.
   */
  install(
    name: string,
    bytes: Uint8Array,
    options: InstallModelOptions = {},
  ): Promise<ModelStatus> {
    return this.#serial(async () => {
      if (!MODEL_NAME_RE.test(name)) {
        throw new ModelInvalidError(`${MODEL_NAME_MESSAGE}, got "${name}"`);
      }
      const { version, maxElements = this.#o.maxElements } = options;
      if (version !== undefined && !/^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$/.test(version)) {
        throw new ModelInvalidError(
          `version must be 1-64 of A-Z a-z 0-9 . + _ -, got "${version}"`,
        );
      }
      if (!Number.isInteger(maxElements) || maxElements < 1 || maxElements > MAX_ELEMENTS_CEILING) {
        throw new ModelInvalidError(
          `max_elements must be an integer from 1 to ${MAX_ELEMENTS_CEILING}, got ${maxElements}`,
        );
      }
      if (bytes.length === 0) throw new ModelInvalidError("the model file is empty");
      if (bytes.length > this.#o.maxModelBytes) {
        throw new ModelInvalidError(
          `the model is ${bytes.length} bytes, nn.max_model_bytes is ${this.#o.maxModelBytes}`,
        );
      }
      const sha256 = await sha256Hex(bytes);
      let info, cost;
      await this.#engineUp();
      try {
        ({ info, cost } = await this.engine.validate(bytes));
      } catch (err) {
        if (!(err instanceof EngineError)) throw err;
        const hint = /alloc|memory/i.test(err.message)
          ? ` (the engine's memory is capped at ${this.#o.memoryBytes} bytes, nn.memory_bytes)`
          : "";
        throw new ModelInvalidError(`the engine cannot load it: ${err.message}${hint}`, {
          cause: err,
        });
      } finally {
        this.#idleCheck();
      }
      const unusable = [
        ...info.inputs.map((t) => ["input", t] as const),
        ...info.outputs.map((t) => ["output", t] as const),
      ]
        .filter(([, t]) => !isElementType(t.type))
        .map(([k, t]) => `${k} ${t.name} has type ${t.type}`);
      if (unusable.length > 0) {
        throw new ModelInvalidError(
          `${
            unusable.join("; ")
          } (WASI-NN tensors here are float32, float64, uint8, int32 or int64)`,
        );
      }
      const record: ModelRecord = {
        name,
        version: version ?? null,
        sha256,
        size: bytes.length,
        max_elements: maxElements,
        inputs: info.inputs,
        outputs: info.outputs,
        cost,
        installed_at: new Date().toISOString(),
      };
      await this.store.save(record, bytes);
      if (this.#inUse(name)) await this.#ensureLoaded(name);
      log.info("model {name} installed ({sha}, {size} bytes)", {
        name,
        sha: sha256.slice(0, 12),
        size: bytes.length,
      });
      return this.#status(record);
    });
  }

  #inUse(name: string): boolean {
    for (const g of this.#grants.values()) if (g.models.includes(name)) return true;
    return false;
  }

  #status(record: ModelRecord): ModelStatus {
    const users = new Set<string>();
    for (const g of this.#grants.values()) if (g.models.includes(record.name)) users.add(g.module);
    return {
      ...record,
      used_by: [...users].sort(),
      loaded: this.#loaded.get(record.name) === record.sha256,
    };
  }

  /**
   * Removes model `name` (and from the engine): modules granted it get
   * `not_found` from their next `load_by_name` and `compute`.
   * @throws {ModelNotFoundError}
   */
  remove(name: string): Promise<void> {
    return this.#serial(async () => {
      if (!(await this.store.remove(name))) throw new ModelNotFoundError(name);
      if (this.#loaded.delete(name)) await this.engine.drop(name).catch(() => {});
      log.info("model {name} removed", { name });
    });
  }

  /** The installed version's digest and file (the source of a model delta), if any. */
  installed(name: string): Promise<{ sha256: string; path: string } | undefined> {
    return this.#serial(async () => {
      if (!MODEL_NAME_RE.test(name)) return undefined;
      const record = await this.store.get(name);
      const path = await this.store.file(name);
      return record && path ? { sha256: record.sha256, path } : undefined;
    });
  }

  /** Every installed model. */
  async list(): Promise<ModelStatus[]> {
    return (await this.store.list()).map((r) => this.#status(r));
  }

  /** One installed model. @throws {ModelNotFoundError} */
  async get(name: string): Promise<ModelStatus> {
    const r = MODEL_NAME_RE.test(name) ? await this.store.get(name) : undefined;
    if (!r) throw new ModelNotFoundError(name);
    return this.#status(r);
  }

  /** The engine's state, for the API and metrics. */
  async engineStatus(): Promise<EngineStatus> {
    const s = await this.engine.stats().catch(() => ({
      heapBytes: 0,
      jsHeapBytes: 0,
      models: [] as string[],
    }));
    const waiting = !this.engine.running && this.#restartTimer !== undefined;
    return {
      state: waiting || this.#restoring
        ? "restarting"
        : this.engine.running
        ? "running"
        : "stopped",
      running: this.engine.running,
      start_ms: Math.round(this.engine.startMs),
      heap_bytes: s.heapBytes,
      js_heap_bytes: s.jsHeapBytes,
      models: s.models,
      ...this.crashCounts,
      last_crash: this.#lastCrash,
      restart_in_ms: waiting ? Math.max(0, this.#restartAt - performance.now()) : 0,
    };
  }

  /** Times the engine died and was started again (for metrics). */
  get crashCounts(): { crashes: number; restarts: number } {
    return { crashes: this.#crashes, restarts: this.#restarts };
  }

  /** Stops the engine for good. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#idle);
    clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    for (const sab of this.#lanes.values()) markEngineDown(sab);
    this.engine.stop();
    this.#lanes.clear();
    this.#loaded.clear();
  }
}
