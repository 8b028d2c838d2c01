/**
 * The installed modules of one module host, by state: running (a
 * {@link ModuleRecord} each, quarantined ones included), loading (on disk, not
 * loaded yet while the host starts), failed (on disk, could not be loaded),
 * and the stored cursors of those not running. It answers what a name is,
 * which modules want a message, and how far all of them have read the
 * message log.
 *
 * @module
 */
import { topicMatches } from "../lib/mod.ts";
import type { BusMessage } from "../runtime/mod.ts";
import type { Cursor } from "./cursors.ts";
import { ModuleFailedError, ModuleLoadingError, ModuleNotFoundError } from "./errors.ts";
import {
  type FailedModule,
  failedStatus,
  type ModuleRecord,
  type ModuleStatus,
} from "./module_record.ts";

/** A module on disk that is not loaded yet, with what it subscribes to. */
type LoadingModule = FailedModule & { subscribe: string[] };

/** Every installed module of one host, whatever its state. */
export class InstalledModules {
  readonly #running = new Map<string, ModuleRecord>();
  /** Installed modules that could not be loaded at start (state "failed"). */
  readonly #failed = new Map<string, FailedModule>();
  /** Installed modules not loaded yet while the host starts (state "loading"). */
  readonly #loading = new Map<string, LoadingModule>();
  /** Cursors stored for modules that are not running (loading, failed). */
  readonly #dormant: Map<string, Cursor>;
  /** Reading-log rows kept for loading modules until they run. */
  readonly #holds = new Map<string, { release(): void }>();

  /** The modules, none running yet, with the cursors stored for them. */
  constructor(dormant: Map<string, Cursor>) {
    this.#dormant = dormant;
  }

  /** The running record of `name`, if it runs. */
  get(name: string): ModuleRecord | undefined {
    return this.#running.get(name);
  }

  /** How many modules run. */
  get runningCount(): number {
    return this.#running.size;
  }

  /** The running records. */
  records(): IterableIterator<ModuleRecord> {
    return this.#running.values();
  }

  /** Whether `r` is still the running record of its module (and at generation `gen`, if given). */
  isCurrent(r: ModuleRecord, gen?: number): boolean {
    return this.#running.get(r.manifest.name) === r && (gen === undefined || r.gen === gen);
  }

  /** The running modules of Worker `lane`. */
  inLane(lane: number): ModuleRecord[] {
    return [...this.#running.values()].filter((r) => r.lane === lane);
  }

  /** The running module whose instance is `inst`. */
  byInstance(inst: number): ModuleRecord | undefined {
    return [...this.#running.values()].find((r) => r.inst === inst);
  }

  /** The lane below `workers` with the fewest running modules. */
  leastLoadedLane(workers: number): number {
    const load = new Array<number>(workers).fill(0);
    for (const r of this.#running.values()) if (r.lane < load.length) load[r.lane]++;
    return load.indexOf(Math.min(...load));
  }

  /** Names of installed modules, in order. */
  names(): string[] {
    return [
      ...new Set([...this.#running.keys(), ...this.#failed.keys(), ...this.#loading.keys()]),
    ].sort();
  }

  /** Whether `name` runs or failed to load (so preloading it again is not wanted). */
  runsOrFailed(name: string): boolean {
    return this.#running.has(name) || this.#failed.has(name);
  }

  /**
   * The status of `name`: from its record when it runs (`running`), else as a
   * failed or loading module. @throws {ModuleNotFoundError}
   */
  status(name: string, running: (r: ModuleRecord) => ModuleStatus): ModuleStatus {
    const r = this.#running.get(name);
    if (r) return running(r);
    const f = this.#failed.get(name);
    if (f) return failedStatus(name, f);
    const l = this.#loading.get(name);
    if (l) return failedStatus(name, l, "loading");
    throw new ModuleNotFoundError(name);
  }

  /**
   * The running record of `name`, for a message of the messages API.
   * @throws {ModuleFailedError} {ModuleLoadingError} {ModuleNotFoundError}
   */
  deliverable(name: string): ModuleRecord {
    const r = this.#running.get(name);
    if (r) return r;
    const f = this.#failed.get(name);
    if (f) throw new ModuleFailedError(name, f.message);
    if (this.#loading.has(name)) throw new ModuleLoadingError(name);
    throw new ModuleNotFoundError(name);
  }

  /**
   * The record of `name`, undefined when it failed to load, for its removal.
   * @throws {ModuleLoadingError} {ModuleNotFoundError}
   */
  removable(name: string): ModuleRecord | undefined {
    const r = this.#running.get(name);
    if (!r && !this.#failed.has(name)) {
      if (this.#loading.has(name)) throw new ModuleLoadingError(name);
      throw new ModuleNotFoundError(name);
    }
    return r;
  }

  /** `r` runs now (first version, or swapped in): no longer failed, its stored cursor in use. */
  running(r: ModuleRecord): void {
    const name = r.manifest.name;
    this.#dormant.delete(name);
    this.#running.set(name, r);
    this.#failed.delete(name);
  }

  /** `name` could not be loaded. */
  markFailed(name: string, version: string, sha256: string, message: string): void {
    this.#failed.set(name, { version, sha256, message, at: new Date() });
  }

  /** `name` is gone (removed), whatever its state. */
  delete(name: string): void {
    this.#running.delete(name);
    this.#failed.delete(name);
    this.#dormant.delete(name);
  }

  /** No module runs any more (the host stopped): holds are let go of. */
  clear(): void {
    for (const h of this.#holds.values()) h.release();
    this.#holds.clear();
    this.#running.clear();
  }

  /** The stored cursor of `name`, if it is not running. */
  dormantCursor(name: string): Cursor | undefined {
    return this.#dormant.get(name);
  }

  /** The highest message-log id a stored cursor has passed. */
  dormantMessagesAbove(): number {
    return Math.max(0, ...[...this.#dormant.values()].map((c) => c.messages));
  }

  /**
   * `name` is on disk and loads later: it is "loading", and `hold` keeps the
   * readings it has not read yet until then.
   */
  markLoading(name: string, module: LoadingModule, hold?: { release(): void }): void {
    this.#loading.set(name, module);
    if (hold) this.#holds.set(name, hold);
  }

  /**
   * `name` is no longer loading. Running, it holds its rows itself; failed,
   * it holds none (it resumes from its cursor once fixed, and what was pruned
   * meanwhile is counted lost).
   */
  loaded(name: string): void {
    this.#loading.delete(name);
    this.#holds.get(name)?.release();
    this.#holds.delete(name);
  }

  /** Nothing is loading any more. */
  loadingDone(): void {
    this.#loading.clear();
  }

  /** Whether some running module other than its publisher subscribes to `msg` (the message log keeps it). */
  wanted(msg: BusMessage): boolean {
    for (const r of this.#running.values()) {
      if (msg.source !== `module:${r.manifest.name}` && r.wants(msg.topic)) return true;
    }
    for (const [name, l] of this.#loading) {
      if (msg.source === `module:${name}` || this.#running.has(name)) continue;
      if (l.subscribe.some((f) => topicMatches(f, msg.topic))) return true;
    }
    return false;
  }

  /** The lowest message-log position a running or loading module still needs, at most `head`. */
  messagesFloor(head: number): number {
    let floor = head;
    for (const r of this.#running.values()) floor = Math.min(floor, r.streams.messages.committed);
    for (const [name, c] of this.#dormant) {
      if (this.#loading.has(name)) floor = Math.min(floor, c.messages);
    }
    return floor;
  }
}
