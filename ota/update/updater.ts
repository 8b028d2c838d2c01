/**
 * The updater: one update's flow, check → download → patch → verify →
 * switch → restart → confirm, plus rollback and module deploys. The state
 * machine it reports (`phase`):
 *
 *     idle ─check─▶ checking ─▶ idle (up to date | available)
 *     idle ─apply─▶ checking ─▶ downloading ─▶ installing ─▶ switching ─▶ restarting (exit 75)
 *     (new process) trial ─healthy─▶ idle      trial ─deadline/crashes─▶ rolled back (exit 75)
 *     any step ─error─▶ failed (last_error kept; the running version is untouched)
 *
 * Nothing before the switch changes which slot starts; the switch is one
 * rename of `state.json`. A crash at any moment therefore starts either the
 * old version, or the new one as a trial that must prove healthy.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { join } from "node:path";
import { applyPatch } from "../delta/mod.ts";
import { type Fetcher, type TargetInfo, TufClient } from "../tuf/mod.ts";
import { download, type DownloadProgress } from "./download.ts";
import {
  DiskSpaceError,
  InstallError,
  UpdateError,
  UpdateNotConfiguredError,
  UpdateStateError,
  UpdateTargetMissingError,
} from "./errors.ts";
import { freeBytes } from "./_fs.ts";
import { sha256File, syncDir } from "../../lib/mod.ts";
import { compareVersions, inRollout } from "./policy.ts";
import { type ModuleCustom, parseCustom } from "../contract.ts";
import { type BootState, otherSlot, rolledBack, type SlotName, SlotStore } from "./state.ts";
import { TokenBucket } from "./token_bucket.ts";
import { confirmBoot } from "./boot.ts";

const log = getLogger(["edged", "update"]);

/** Phases of the updater's state machine (see the module comment). */
export type UpdatePhase =
  | "idle"
  | "checking"
  | "downloading"
  | "installing"
  | "switching"
  | "restarting"
  | "trial"
  | "failed";

/** Options of {@linkcode Updater}. */
export interface UpdaterOptions {
  /** Absolute data directory. */
  dataDir: string;
  /** Repository base URL (metadata under `metadata/`, targets under `targets/`). */
  url?: string;
  /** The trusted root.json shipped with the device (used once, to initialise). */
  rootPath?: string;
  /** Target triple of this device's releases. */
  triple: string;
  /** Device id, for staged rollouts. */
  deviceId: string;
  /** Version of the factory executable (when no slot is active). */
  factoryVersion: string;
  /** Factory executable path, if known (its digest selects deltas). */
  factoryBinary?: string;
  /** Bandwidth limit in bytes per second; 0 = none. */
  rateLimit?: number;
  /** Token-bucket burst in bytes. */
  burst?: number;
  /** Download attempts without progress before giving up. */
  retries?: number;
  /** Per-request idle timeout in ms. */
  idleTimeoutMs?: number;
  /** Back-off base in ms. */
  backoffMs?: number;
  /** Called to restart into the new slot (the runtime exits with `EXIT.RESTART`, 75). */
  requestRestart?: (reason: string) => void;
  /** Installs a verified module (the sandbox's hot swap). */
  installModule?: (manifest: unknown, wasm: Uint8Array) => Promise<unknown>;
  /** TUF fetcher for metadata (tests). */
  fetcher?: Fetcher;
}

/** A release this device could take. */
export interface Candidate {
  /** Release version. */
  version: string;
  /** TUF target path of the release. */
  path: string;
  /** Its length in bytes. */
  length: number;
  /** Its SHA-256. */
  sha256: string;
  /** The delta that applies to the running executable, if any. */
  delta?: { path: string; length: number };
}

/** Answer of {@linkcode Updater.check}. */
export interface CheckResult {
  /** The running version. */
  current: string;
  /** The release to take, or null. */
  available: Candidate | null;
  /** Why a newer release was not offered (rollout), if so. */
  skipped?: string[];
}

/** Answer of {@linkcode Updater.status} (GET /api/v1/update). */
export interface UpdateStatus {
  /** Where the state machine is. */
  phase: UpdatePhase;
  /** What runs now (slot null: the factory executable). */
  current: { version: string; slot: SlotName | null; sha256: string | null };
  /** Result of the last check. */
  available: Candidate | null;
  /** Active slot. */
  active: SlotName | null;
  /** Slot kept for rollback. */
  previous: SlotName | null;
  /** What the slots hold. */
  slots: BootState["slots"];
  /** The unconfirmed version, if any. */
  trial: BootState["trial"];
  /** The download under way, if any. */
  progress: {
    target: string;
    received: number;
    total: number;
    resumed_from: number;
    bytes_per_second: number;
  } | null;
  /** ISO time of the last successful check. */
  last_check: string | null;
  /** Message of the last failed operation, cleared by the next success. */
  last_error: string | null;
  /** The last rollback. */
  last_rollback: BootState["last_rollback"];
  /** Whether an update repository is configured. */
  configured: boolean;
}

/** Answer of {@linkcode Updater.apply}. */
export interface ApplyResult {
  /** "up-to-date", or "installed" (restart requested). */
  outcome: "up-to-date" | "installed";
  /** Installed version. */
  version?: string;
  /** Slot it went into. */
  slot?: SlotName;
  /** "delta" or "full". */
  method?: "delta" | "full";
  /** Why the delta was not used, when it was not. */
  deltaFallback?: string;
  /** Bytes fetched over the network. */
  fetched?: number;
}

/** The update pipeline of one device. */
export class Updater {
  /** The slot layout and state of this data directory. */
  readonly store: SlotStore;
  readonly #o: UpdaterOptions;
  readonly #bucket: TokenBucket;
  #client?: TufClient;
  #phase: UpdatePhase = "idle";
  #available: Candidate | null = null;
  #progress: UpdateStatus["progress"] = null;
  #lastCheck: string | null = null;
  #lastError: string | null = null;
  #state?: BootState;
  #busy: Promise<unknown> = Promise.resolve();

  /** Creates the updater; nothing is read until used. */
  constructor(options: UpdaterOptions) {
    this.#o = options;
    this.store = new SlotStore(options.dataDir);
    this.#bucket = new TokenBucket({
      rate: options.rateLimit ?? 0,
      burst: options.burst ?? Math.max(1, options.rateLimit ?? 1),
    });
  }

  /** True when a repository URL and a trusted root (given or stored) exist. */
  get configured(): boolean {
    return this.#o.url !== undefined;
  }

  /** The current phase. */
  get phase(): UpdatePhase {
    return this.#phase;
  }

  /** Progress of the download under way, if any. */
  get progress(): UpdateStatus["progress"] {
    return this.#progress;
  }

  /** Sets the phase (the component sets "trial" and back). */
  setPhase(p: UpdatePhase): void {
    this.#phase = p;
  }

  /** Reads the boot state (cached for status). */
  async loadState(): Promise<BootState> {
    this.#state = await this.store.read();
    return this.#state;
  }

  /** Version, slot and digest of what runs now. */
  async running(): Promise<{ version: string; slot: SlotName | null; sha256: string | null }> {
    const s = this.#state ?? await this.loadState();
    if (s.active) {
      const info = s.slots[s.active]!;
      return { version: info.version, slot: s.active, sha256: info.sha256 };
    }
    const sha = this.#o.factoryBinary ? await sha256File(this.#o.factoryBinary) : undefined;
    return { version: this.#o.factoryVersion, slot: null, sha256: sha ?? null };
  }

  /** The running executable's path, if known (source of deltas). */
  #runningBinary(s: BootState): string | undefined {
    return s.active ? this.store.binaryPath(s.active) : this.#o.factoryBinary;
  }

  /** Status for the API, metrics and MQTT. */
  async status(): Promise<UpdateStatus> {
    const s = await this.loadState();
    return {
      phase: this.#phase,
      current: await this.running(),
      available: this.#available,
      active: s.active,
      previous: s.previous,
      slots: s.slots,
      trial: s.trial,
      progress: this.#progress,
      last_check: this.#lastCheck,
      last_error: this.#lastError,
      last_rollback: s.last_rollback,
      configured: this.configured,
    };
  }

  /** Runs `fn` after any update operation in progress (one at a time). */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#busy.then(fn, fn);
    this.#busy = run.catch(() => {});
    return run;
  }

  async #tuf(): Promise<TufClient> {
    if (this.#o.url === undefined) {
      throw new UpdateNotConfiguredError("no update repository configured (update.url)");
    }
    if (!this.#client) {
      await this.store.ensure();
      try {
        await Deno.stat(join(this.store.tufDir, "root.json"));
      } catch {
        if (!this.#o.rootPath) {
          throw new UpdateNotConfiguredError(
            `no trusted root: set update.root to the repository's root.json`,
          );
        }
        // TUF 5.2: the root shipped with the device is the start of the chain of trust.
        await TufClient.init(this.store.tufDir, await Deno.readFile(this.#o.rootPath));
      }
      const base = this.#o.url.endsWith("/") ? this.#o.url : `${this.#o.url}/`;
      this.#client = new TufClient({
        metadataDir: this.store.tufDir,
        metadataBaseUrl: `${base}metadata/`,
        targetBaseUrl: `${base}targets/`,
        fetcher: this.#o.fetcher,
      });
    }
    return this.#client;
  }

  /** Checks the repository for a newer release this device should take. */
  check(): Promise<CheckResult> {
    return this.#exclusive(() => this.#track(() => this.#check()));
  }

  async #track<T>(fn: () => Promise<T>): Promise<T> {
    try {
      const r = await fn();
      if (this.#phase !== "restarting" && this.#phase !== "trial") this.#phase = "idle";
      this.#lastError = null;
      return r;
    } catch (err) {
      this.#phase = "failed";
      this.#lastError = (err as Error).message;
      this.#progress = null;
      log.error("update failed: {error}", { error: (err as Error).message });
      throw err;
    }
  }

  async #check(): Promise<CheckResult> {
    const prior = this.#phase;
    this.#phase = "checking";
    const client = await this.#tuf();
    // TUF 5.3-5.6: every check starts from a full, verified refresh.
    await client.refresh();
    this.#lastCheck = new Date().toISOString();
    const s = await this.loadState();
    const run = await this.running();
    const targets = Object.fromEntries(client.listTargets().map((t) => [t.path, t]));
    const releases: { path: string; version: string; rollout?: number }[] = [];
    for (const [path, t] of Object.entries(targets)) {
      const c = parseCustom(t.custom);
      if (c?.kind !== "release" || c.triple !== this.#o.triple) continue;
      releases.push({ path, version: c.version, rollout: c.rollout_percent });
      // Identify the running executable by digest: a stand-in or factory
      // build may not know which published release it is.
      if (run.sha256 && t.hashes.sha256 === run.sha256 && run.version !== c.version) {
        run.version = c.version;
        if (s.active) {
          await this.store.update((st) => {
            st.slots[s.active!]!.version = run.version;
            return st;
          });
          await this.loadState();
        }
      }
    }
    releases.sort((a, b) => compareVersions(b.version, a.version));
    const skipped: string[] = [];
    let pick: { path: string; version: string } | undefined;
    for (const r of releases) {
      if (compareVersions(r.version, run.version) <= 0) break;
      if (s.rejected?.includes(r.version)) {
        skipped.push(`${r.version}: rolled back from earlier`);
        continue;
      }
      if (!(await inRollout(this.#o.deviceId, r.version, r.rollout))) {
        skipped.push(`${r.version}: not in its ${r.rollout}% rollout`);
        continue;
      }
      pick = r;
      break;
    }
    let available: Candidate | null = null;
    if (pick) {
      // 5.6.7: the entry actually used comes from the trusted delegation search.
      const info = await client.requireTargetInfo(pick.path);
      const sha = info.hashes.sha256;
      if (!sha) throw new UpdateError(`${pick.path} lists no sha256`);
      available = { version: pick.version, path: pick.path, length: info.length, sha256: sha };
      for (const [path, t] of Object.entries(targets)) {
        const c = parseCustom(t.custom);
        if (
          c?.kind === "delta" && c.format === "BSDIFF40" && c.triple === this.#o.triple &&
          c.to_sha256 === sha && run.sha256 !== null && c.from_sha256 === run.sha256
        ) {
          available.delta = { path, length: t.length };
          break;
        }
      }
    }
    this.#available = available;
    if (prior === "trial") this.#phase = "trial";
    log.info("update check: running {current}, available {available}", {
      current: run.version,
      available: available?.version ?? "none",
    });
    return { current: run.version, available, skipped: skipped.length ? skipped : undefined };
  }

  /**
   * Checks, downloads (delta when one maps the running digest, else the whole
   * release), installs into the inactive slot, verifies, switches, and asks
   * for a restart. Refused while the running version is still a trial.
   */
  apply(): Promise<ApplyResult> {
    return this.#exclusive(() => this.#track(() => this.#apply()));
  }

  async #apply(): Promise<ApplyResult> {
    const s0 = await this.loadState();
    if (s0.trial && s0.trial.slot === s0.active) {
      throw new UpdateStateError(
        `the running version ${s0.trial.version} is still on trial; apply after it is confirmed`,
      );
    }
    const { available } = await this.#check();
    if (!available) return { outcome: "up-to-date" };
    const client = await this.#tuf();
    const release = await client.requireTargetInfo(available.path);
    await this.store.ensure();
    // Partial downloads of releases no longer wanted would only take space.
    const keep = [release.hashes.sha256];
    if (available.delta) {
      keep.push((await client.requireTargetInfo(available.delta.path)).hashes.sha256);
    }
    await this.#cleanDownloads(keep);

    // The inactive slot is overwritten, so first make sure nothing points at it.
    const s1 = await this.store.update((s) => {
      const target = s.active ? otherSlot(s.active) : "a";
      const slots = { ...s.slots };
      delete slots[target];
      return { ...s, previous: s.previous === target ? null : s.previous, slots };
    });
    const slot: SlotName = s1.active ? otherSlot(s1.active) : "a";
    const dest = this.store.binaryPath(slot);
    let method: "delta" | "full" = "full";
    let deltaFallback: string | undefined;
    let fetched = 0;

    const source = this.#runningBinary(s1);
    if (available.delta && source) {
      try {
        const info = await client.requireTargetInfo(available.delta.path);
        const patch = await this.#download(client, info);
        fetched += patch.fetched;
        this.#phase = "installing";
        await this.#requireSpace(this.store.slotDir(slot), release.length);
        // BSDIFF40 output straight into the slot (temp file, fsync, rename),
        // checked against the release digest before the rename.
        await applyPatch(source, patch.path, dest, {
          mode: 0o755,
          expectedSha256: release.hashes.sha256,
        });
        await client.verifyTargetFile(release, dest);
        method = "delta";
      } catch (err) {
        deltaFallback = (err as Error).message;
        log.warning("delta {path} not usable ({error}); downloading the whole release", {
          path: available.delta.path,
          error: deltaFallback,
        });
        await Deno.remove(dest).catch(() => {});
      }
    } else if (!available.delta) {
      deltaFallback = "no delta from the running executable's digest";
    }
    if (method === "full") {
      const full = await this.#download(client, release);
      fetched += full.fetched;
      this.#phase = "installing";
      try {
        await Deno.chmod(full.path, 0o755);
        await Deno.rename(full.path, dest);
        await syncDir(this.store.slotDir(slot));
        await client.verifyTargetFile(release, dest);
      } catch (cause) {
        await Deno.remove(dest).catch(() => {});
        throw new InstallError(
          `installing ${available.version} into slot ${slot} failed: ${(cause as Error).message}`,
          { cause },
        );
      }
    }

    // The switch: one atomic replacement of state.json.
    this.#phase = "switching";
    const sha = release.hashes.sha256;
    await this.store.update((s) => ({
      ...s,
      active: slot,
      previous: s.active,
      slots: {
        ...s.slots,
        [slot]: {
          version: available.version,
          sha256: sha,
          installed_at: new Date().toISOString(),
          source: method,
        },
      },
      trial: { slot, version: available.version, attempts: 0, since: new Date().toISOString() },
    }));
    await this.store.linkCurrent(await this.loadState());
    await this.#cleanDownloads();
    this.#progress = null;
    this.#phase = "restarting";
    log.info("installed {version} into slot {slot} by {method}; restarting", {
      version: available.version,
      slot,
      method,
    });
    this.#o.requestRestart?.(`update to ${available.version}`);
    return {
      outcome: "installed",
      version: available.version,
      slot,
      method,
      deltaFallback,
      fetched,
    };
  }

  async #download(client: TufClient, info: TargetInfo) {
    this.#phase = "downloading";
    const sha = info.hashes.sha256;
    if (!sha) throw new UpdateError(`${info.path} lists no sha256`);
    const dest = join(this.store.downloadsDir, `${sha}-${info.path.split("/").pop()}`);
    const started = performance.now();
    const res = await download({
      url: client.targetUrl(info),
      dest,
      length: info.length,
      sha256: sha,
      bucket: this.#bucket,
      retries: this.#o.retries,
      idleTimeoutMs: this.#o.idleTimeoutMs,
      backoffMs: this.#o.backoffMs,
      onProgress: (p: DownloadProgress) => {
        const secs = (performance.now() - started) / 1000;
        this.#progress = {
          target: info.path,
          received: p.received,
          total: p.total,
          resumed_from: p.resumedFrom,
          bytes_per_second: secs > 0 ? Math.round((p.received - p.resumedFrom) / secs) : 0,
        };
      },
    });
    // TUF 5.7.3: every listed hash and the length, before use.
    await client.verifyTargetFile(info, res.path);
    return res;
  }

  /** Throws {@link DiskSpaceError} unless `bytes` plus a 16 MiB reserve fit in `dir`. */
  async #requireSpace(dir: string, bytes: number): Promise<void> {
    const free = await freeBytes(dir);
    const need = bytes + (16 << 20);
    if (free < need) {
      throw new DiskSpaceError(`${dir} has ${free} bytes free; installing needs ${need}`);
    }
  }

  /** Removes downloads, except those of the targets with digests in `keep`. */
  async #cleanDownloads(keep: string[] = []): Promise<void> {
    for await (const e of Deno.readDir(this.store.downloadsDir)) {
      if (keep.some((sha) => sha && e.name.startsWith(sha))) continue;
      await Deno.remove(join(this.store.downloadsDir, e.name)).catch(() => {});
    }
  }

  /**
   * Rolls back to the previous slot now (manual) and asks for a restart.
   * The version rolled back from stays installed as the previous slot.
   */
  rollback(reason = "requested by operator"): Promise<BootState> {
    return this.#exclusive(async () => {
      const s = await this.store.update((st) => rolledBack(st, reason, { keepFrom: !st.trial }));
      await this.store.linkCurrent(s);
      this.#state = s;
      this.#phase = "restarting";
      log.warning("rolled back to {version}: {reason}", {
        version: s.last_rollback?.to,
        reason,
      });
      this.#o.requestRestart?.(`rollback to ${s.last_rollback?.to}`);
      return s;
    });
  }

  /**
   * Installs module `name` from the repository (newest version, or
   * `version`): a TUF target verified like any other, then handed to the
   * sandbox, which validates it and hot-swaps it in.
   */
  deployModule(name: string, version?: string): Promise<{ name: string; version: string }> {
    return this.#exclusive(() =>
      this.#track(async () => {
        if (!this.#o.installModule) throw new UpdateError("no module host to install into");
        const client = await this.#tuf();
        await client.refresh();
        const targets = Object.fromEntries(client.listTargets().map((t) => [t.path, t]));
        const found: { path: string; custom: ModuleCustom }[] = [];
        for (const [path, t] of Object.entries(targets)) {
          const c = parseCustom(t.custom);
          if (c?.kind !== "module" || c.name !== name) continue;
          if (version === undefined || c.version === version) found.push({ path, custom: c });
        }
        found.sort((a, b) => compareVersions(b.custom.version, a.custom.version));
        if (found.length === 0) {
          throw new UpdateTargetMissingError(
            `the repository has no module ${name}${version ? ` version ${version}` : ""}`,
          );
        }
        const info = await client.requireTargetInfo(found[0].path);
        // 5.6.7: the entry used is the one the trusted delegation search returns.
        const custom = parseCustom(info.custom);
        if (custom?.kind !== "module") {
          throw new UpdateTargetMissingError(`${found[0].path} is not a module target`);
        }
        const file = await this.#download(client, info);
        const wasm = await Deno.readFile(file.path);
        await this.#o.installModule(custom.manifest, wasm);
        await Deno.remove(file.path).catch(() => {});
        this.#progress = null;
        const v = custom.version;
        log.info("deployed module {name} {version} from the repository", { name, version: v });
        return { name, version: v };
      })
    );
  }

  /** Marks the running trial healthy. */
  async confirm(): Promise<boolean> {
    const s = await this.loadState();
    if (!(await confirmBoot(this.store, s.active))) return false;
    await this.loadState();
    return true;
  }

  /** Rolls back a trial that missed its deadline, and asks for a restart. */
  async failTrial(reason: string): Promise<void> {
    await this.#exclusive(async () => {
      const s = await this.store.update((st) => rolledBack(st, reason));
      await this.store.linkCurrent(s);
      this.#state = s;
      this.#phase = "restarting";
      this.#lastError = reason;
      this.#o.requestRestart?.(`rollback: ${reason}`);
    });
  }
}
