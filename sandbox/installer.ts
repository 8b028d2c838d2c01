/**
 * Bringing a module version to running: validated and instrumented, loaded
 * into its Worker while the version it replaces keeps running there, saved on
 * disk, its cursor durable when it is new, then swapped in with one
 * synchronous step between two messages. Also loads what is installed on disk
 * when the host starts, marking what cannot be loaded as failed.
 *
 * @module
 */
import { getLogger } from "../lib/mod.ts";
import type { GroupCommit } from "../runtime/mod.ts";
import type { CursorStore } from "./cursors.ts";
import type { Effects } from "./effects.ts";
import { ModuleFault, ModuleValidationError } from "./errors.ts";
import type { Feeder } from "./feed.ts";
import type { InstalledModules } from "./installed_modules.ts";
import type { Lanes } from "./lanes.ts";
import type { Manifest } from "./manifest.ts";
import { manifestParser } from "./_manifest_parser.ts";
import { ModuleRecord } from "./module_record.ts";
import type { ModuleStore } from "./persist.ts";
import type { WorkerPool } from "./pool.ts";
import type { ValidatedModule, validateModule } from "./validate.ts";

const log = getLogger(["edged", "modules"]);

/** What an install touches. */
export interface InstallerOptions {
  /** Fuel metering; off only for benchmarks. */
  meter: boolean;
  /** First quarantine back-off of a new module. */
  quarantineMs: number;
  installed: InstalledModules;
  lanes: Lanes;
  disk: ModuleStore;
  feeder: Feeder;
  commits: GroupCommit;
  cursors: CursorStore;
  effects: Effects;
  /** Sends what waits for Worker `lane`. */
  kick: (lane: number) => void;
  /** `validateModule`, wherever it runs (the host's validator Worker). */
  validate: typeof validateModule;
}

/** Installs and swaps the modules of one host (one at a time per name: the caller's turn). */
export class Installer {
  readonly #o: InstallerOptions;

  /** An installer over `options`. */
  constructor(options: InstallerOptions) {
    this.#o = options;
  }

  /** Loads one module installed on disk; one that cannot be loaded is marked failed. */
  async loadInstalled(stored: ReturnType<ModuleStore["loadAll"]>[number]): Promise<void> {
    if ("error" in stored) {
      log.error("cannot read installed module {name}: {error}", {
        name: stored.name,
        error: stored.error.message,
      });
      this.#o.installed.markFailed(
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
      const manifest = (await manifestParser())(stored.manifestJson);
      version = manifest.version;
      sha256 = manifest.sha256 ?? "";
      await this.activate(manifest, stored.bytes);
    } catch (err) {
      log.error("installed module {name} did not load: {error}", {
        name: stored.name,
        error: String(err),
      });
      this.#o.installed.markFailed(stored.name, version, sha256, (err as Error).message);
    }
  }

  /**
   * Validates `bytes` against `manifest`, loads the module, saves it when
   * `persist`, and makes it the running version of its name.
   * @throws {ModuleValidationError} with every reason when refused.
   */
  async activate(
    manifest: Manifest,
    bytes: Uint8Array,
    persist = false,
  ): Promise<ValidatedModule> {
    const { installed, lanes } = this.#o;
    const validated = await this.#o.validate(bytes, manifest, { meter: this.#o.meter });
    const pool = lanes.workers();
    const old = installed.get(manifest.name);
    const lane = old?.lane ?? lanes.leastLoaded();
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
        await this.#o.disk.save(
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
    let cursor = old ? undefined : installed.dormantCursor(manifest.name);
    if (!old && !cursor) {
      const start = this.#o.feeder.startOf(manifest.backlog);
      try {
        await this.#o.commits.stage(() => this.#o.cursors.put(manifest.name, start));
      } catch (err) {
        void pool.unload(loaded.inst);
        throw err;
      }
      cursor = start;
    }
    if (installed.get(manifest.name) !== old) {
      // Replaced meanwhile (cannot happen while installs are serialised per name).
      void pool.unload(loaded.inst);
      throw new Error(`module ${manifest.name} changed while it was being installed`);
    }
    // The swap: everything below is synchronous. Messages already sent to the
    // Worker finish on the old instance (it is unloaded after them); queued
    // messages stay queued and go to the new version, which continues from
    // the same cursors.
    const r = old ?? new ModuleRecord(validated, this.#o.quarantineMs, lane, cursor!);
    if (old) {
      if (old.inst !== undefined) void pool.unload(old.inst);
      r.swapTo(validated);
    }
    r.inst = loaded.inst;
    r.lane = lane;
    r.memoryBytes = loaded.memoryBytes;
    r.state = "running";
    r.consecutive = 0;
    r.backoffMs = this.#o.quarantineMs;
    installed.running(r);
    this.#o.feeder.attach(r);
    if (loaded.kv) this.#o.effects.stage({ r, gen: r.gen, kv: loaded.kv, published: [] });
    // What waits in its queue or its logs goes now.
    this.#o.kick(lane);
    log.info("module {name} {version} running ({sha})", {
      name: manifest.name,
      version: manifest.version,
      sha: validated.sha256.slice(0, 12),
    });
    return validated;
  }
}
