/**
 * The Workers that run one module host's modules, its lanes: the pool,
 * started on first use; the lane each module runs in (the least loaded
 * regular Worker when first installed, kept across swaps; the probation
 * Worker, one past the regular ones, after a runaway); and loading a module
 * again from a fresh instance when its Worker crashed, when it moves, or when
 * a group transaction with its effects failed.
 *
 * @module
 */
import { getLogger, StorageFullError } from "../lib/mod.ts";
import type { GroupCommit } from "../runtime/mod.ts";
import { type FaultKind, WorkerGoneError } from "./errors.ts";
import type { Effects } from "./effects.ts";
import type { InstalledModules } from "./installed_modules.ts";
import type { SqliteKv } from "./kv.ts";
import type { ModuleRecord } from "./module_record.ts";
import type { NnPoolLink } from "./nn/service.ts";
import { WorkerPool } from "./pool.ts";
import type { KeyedLock } from "./_keyed_lock.ts";

const log = getLogger(["edged", "modules"]);
/** How long modules first wait when the disk was full for their effects; it doubles up to the most. */
const HOLD_FIRST_MS = 1000;
const HOLD_MOST_MS = 30_000;
const LEVELS = ["debug", "info", "warning", "error"] as const;

/** What the lanes are made of. */
export interface LanesOptions {
  /** Regular Workers; the probation Worker is one more. */
  workers: number;
  /** Module log lines per second (burst 5×) reaching the device log. */
  logLinesPerSecond: number;
  /** The runtime's thread per second one module's kv and sensor calls may take (ms). */
  threadMsPerSecond: number;
  nn?: NnPoolLink;
  /** The wall-clock deadline of one call, from its fuel budget. */
  deadlineMs: (fuelPerMessage: number) => number;
  kv: SqliteKv;
  installed: InstalledModules;
  /** The turns of each module's installs, removals and reloads. */
  lock: KeyedLock;
  commits: GroupCommit;
  effects: Effects;
}

/** What the lanes need from the module host. */
export interface LanesHost {
  /** True once the host stopped: no Worker starts any more. */
  stopped(): boolean;
  /** Sends what waits for Worker `lane`. */
  kick(lane: number): void;
  /** Counts a fault of `r`. */
  fault(r: ModuleRecord, error: { kind: FaultKind; message: string }): void;
  /** A call held Worker `lane` past its deadline (see `WorkerPool`'s `onOverrun`). */
  overrun(lane: number, inst: number, heldMs: number, running: boolean): void;
}

/** The Workers of one module host and the modules' places in them. */
export class Lanes {
  readonly #o: LanesOptions;
  readonly #host: LanesHost;
  #pool: WorkerPool | undefined;
  /**
   * Until when (`performance.now()` ms) no module is sent anything: the store refused their
   * effects for a full disk, and running them again at once would fail again.
   */
  heldUntil = 0;
  #holdMs = HOLD_FIRST_MS;

  /** Lanes of `options`, none started yet. */
  constructor(options: LanesOptions, host: LanesHost) {
    this.#o = options;
    this.#host = host;
  }

  /** The Worker pool, if started. */
  get pool(): WorkerPool | undefined {
    return this.#pool;
  }

  /** The Worker pool, started on first use. @throws {WorkerGoneError} once the host stopped. */
  workers(): WorkerPool {
    if (this.#host.stopped()) {
      throw new WorkerGoneError(0, "is stopped: the module host was stopped");
    }
    if (!this.#pool) {
      const perSecond = this.#o.logLinesPerSecond;
      this.#pool = new WorkerPool({
        size: this.#o.workers + 1, // the last one is the probation Worker
        kv: this.#o.kv,
        logRate: { perSecond, burst: perSecond * 5 },
        threadShare: {
          moduleMsPerSecond: this.#o.threadMsPerSecond,
          workerMsPerSecond: 4 * this.#o.threadMsPerSecond,
        },
        onSink: (lines) => {
          for (const { module, level, line } of lines) {
            getLogger(["edged", "module", module])[LEVELS[level]]("{line}", { line });
          }
        },
        onCrash: (lane, why) => this.#recover(lane, why),
        nn: this.#o.nn,
        deadlineMs: (m) => this.#o.deadlineMs(m.limits.fuel_per_message),
        onOverrun: (lane, inst, heldMs, running) => this.#host.overrun(lane, inst, heldMs, running),
      });
    }
    return this.#pool;
  }

  /** Stops every Worker. */
  terminate(): void {
    this.#pool?.terminate();
    this.#pool = undefined;
  }

  /** The regular Worker with the fewest modules (never the probation Worker). */
  leastLoaded(): number {
    return this.#o.installed.leastLoadedLane(this.#o.workers);
  }

  /** Moves `r` to the probation Worker, unless it is there already. */
  toProbation(r: ModuleRecord): void {
    const probation = this.#o.workers;
    if (r.lane === probation || !this.#o.installed.isCurrent(r)) return;
    log.warn("module {name} moves to the probation worker", { name: r.manifest.name });
    this.reload(r, probation, "move to the probation worker");
  }

  /** A Worker died: its modules lose their in-flight messages (counted) and load again. */
  #recover(lane: number, why: string): void {
    log.error("sandbox worker {lane} {why}; reloading its modules", { lane, why });
    for (const r of this.#o.installed.records()) {
      if (r.lane === lane) this.reload(r, lane, "reload after a worker crash");
    }
  }

  /**
   * Runs `r` from a fresh instance in Worker `lane`. Its queue waits meanwhile;
   * a swap that lands first wins.
   */
  reload(r: ModuleRecord, lane: number, what: string): void {
    const installed = this.#o.installed;
    // The old Worker lets go first (its kv cache of the module goes with it).
    const unloaded = r.inst !== undefined ? this.#pool?.unload(r.inst) : undefined;
    r.inst = undefined;
    r.lane = lane;
    void this.#o.lock.run(r.manifest.name, async () => {
      await unloaded;
      // Its effects so far are in the kv usage the new instance starts from.
      await this.#o.commits.flushed();
      if (!installed.isCurrent(r) || r.inst !== undefined) return;
      try {
        const loaded = await this.workers().load(lane, r.validated);
        if (!installed.isCurrent(r)) {
          void this.#pool?.unload(loaded.inst);
          return;
        }
        r.inst = loaded.inst;
        r.memoryBytes = loaded.memoryBytes;
        if (loaded.kv) this.#o.effects.stage({ r, gen: r.gen, kv: loaded.kv, published: [] });
        this.#host.kick(lane);
      } catch (err) {
        if (!this.#host.stopped()) {
          this.#host.fault(r, { kind: "host", message: `${what}: ${err}` });
        }
      }
    }).catch(() => {});
  }

  /**
   * Throws away `r`'s queued and in-flight work and starts it again from its
   * committed cursors on a fresh instance: its kv as committed, its messages
   * from the logs (after a group transaction with its effects failed, or
   * refused its kv writes, which its Worker's kv cache already serves).
   * Counted as a `host` fault with `why`, unless `fault` is false.
   */
  restart(r: ModuleRecord, why: string, fault = true): void {
    r.gen++;
    r.clearQueue();
    for (const s of [r.streams.readings, r.streams.messages]) s.next = s.committed;
    this.#o.kv.dropStaged(r.manifest.name);
    if (fault) this.#host.fault(r, { kind: "host", message: why });
    if (this.#o.installed.isCurrent(r)) this.reload(r, r.lane, "restart");
  }

  /**
   * A group transaction with the effects of `records` failed: each starts
   * over. For a full disk that is no fault of theirs: nothing is counted
   * against them, and every module waits (1 s, doubling up to 30 s while the
   * disk stays full) before it runs again.
   */
  commitFailed(records: Set<ModuleRecord>, err: unknown): void {
    if (this.#host.stopped()) return; // the store closed under a stopping host: nothing to redo
    const full = err instanceof StorageFullError;
    if (full) {
      log.warning("the disk is full: modules wait {ms} ms, then run again from their cursors", {
        ms: this.#holdMs,
      });
      this.heldUntil = performance.now() + this.#holdMs;
      this.#holdMs = Math.min(this.#holdMs * 2, HOLD_MOST_MS);
    } else log.error("committing module effects failed: {error}", { error: String(err) });
    for (const r of records) {
      if (this.#o.installed.isCurrent(r)) {
        this.restart(
          r,
          `its effects did not commit (${err}); starting over from its cursors`,
          !full,
        );
      }
    }
  }

  /** Module effects committed: a later full disk holds the modules for the shortest time again. */
  committed(): void {
    this.#holdMs = HOLD_FIRST_MS;
  }
}
