/**
 * The updater: one update's flow, check → download → patch → verify →
 * switch → restart → confirm, plus rollback and module deploys. The state
 * machine it reports (`phase`):
 *
 *     idle ─check─▶ checking ─▶ idle (up to date | available)
 *     idle ─apply─▶ checking ─▶ downloading ─▶ installing ─▶ switching ─▶ restarting (exit 75)
 *     (new process) trial ─healthy─▶ idle      trial ─deadline/crashes─▶ rolled back (exit 75)
 *     any step ─error─▶ failed (last_error kept; the running version and the slots untouched)
 *
 * Nothing before the switch changes which slot starts or what the slots
 * hold: the new release is downloaded (or patched) and verified beside the
 * slots, and the switch is one rename of `state.json` that makes it active
 * and the running version the rollback target. Only then is the staged file
 * renamed onto the slot it was meant for (see state.ts). A crash at any
 * moment therefore starts either the old version, with its rollback target
 * intact, or the new one as a trial that must prove healthy.
 *
 * Checks, rollbacks and module deploys never wait behind a release download:
 * TUF refreshes take turns among themselves, a rollback cancels the apply
 * under way (which keeps what it downloaded for the next attempt), and
 * {@linkcode Updater.close} cancels everything at shutdown.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { basename, join } from "node:path";
import { type Fetcher, HttpFetcher, type TargetInfo, TufClient } from "../tuf/mod.ts";
import { download, type DownloadProgress, type DownloadResult } from "./download.ts";
import {
  UpdateCancelledError,
  UpdateError,
  UpdateNotConfiguredError,
  UpdateStateError,
  UpdateTargetMissingError,
} from "./errors.ts";
import { errorCode, sha256File } from "../../lib/mod.ts";
import { switchToStaged } from "./install.ts";
import { stageRelease, verifyTarget } from "./stage.ts";
import { compareVersions, inRollout } from "./policy.ts";
import { type ModuleCustom, parseCustom } from "../contract.ts";
import { type BootState, rolledBack, type SlotName, SlotStore } from "./state.ts";
import { TokenBucket } from "./token_bucket.ts";
import { confirmBoot } from "./boot.ts";
import { fetchModel, pickModel } from "./model_deploy.ts";

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
  /** Idle timeout of every request (metadata and targets) in ms. @default {30000} */
  idleTimeoutMs?: number;
  /**
   * Lowest average rate, in bytes per second, a download may take: each one
   * gives up (resumable) when not complete within the idle timeout plus its
   * missing bytes at this rate; at most half the rate limit when one is set.
   * @default {8192}
   */
  minRateBytesPerS?: number;
  /** Back-off base in ms. */
  backoffMs?: number;
  /** Called to restart into the new slot (the runtime exits with `EXIT.RESTART`, 75). */
  requestRestart?: (reason: string) => void;
  /** Installs a verified module (the sandbox's hot swap). */
  installModule?: (manifest: unknown, wasm: Uint8Array) => Promise<unknown>;
  /** Installs a verified model (validated again by the engine, replaced between computations). */
  installModel?: (name: string, bytes: Uint8Array, version: string) => Promise<unknown>;
  /** The installed version of a model, the source of model deltas. */
  installedModel?: (name: string) => Promise<{ sha256: string; path: string } | undefined>;
  /** TUF fetcher for metadata (tests). @default an HttpFetcher with `idleTimeoutMs` */
  fetcher?: Fetcher;
  /**
   * Called at each step of an apply (see {@linkcode ApplyStep}); the crash
   * tests kill the process there to prove that every step is crash-safe.
   */
  onStep?: (step: ApplyStep) => void;
  /** Called when a check, apply or module deploy fails (metrics). */
  onFailure?: (operation: "check" | "apply" | "deploy", err: unknown) => void;
}

/**
 * Steps of an apply, in order: `checked` (metadata refreshed, a release
 * chosen), `downloading` (the first bytes of a download are on disk),
 * `patching` (part of the delta's output is written), `staged` (the release
 * verified beside the slots), `switched` (`state.json` names the new slot,
 * the staged file is not yet renamed onto it), `installed` (the slot holds
 * the release; the restart is next).
 */
export type ApplyStep =
  | "checked"
  | "downloading"
  | "patching"
  | "staged"
  | "switched"
  | "installed";

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
  /** Its error code (`update_verification_failed`, `update_download_failed`, ...). */
  last_error_code: string | null;
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
  /** "delta", or "full" (also when an earlier, interrupted attempt had staged the release). */
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
  /** Outcome of the last operation, or "trial"/"restarting". */
  #base: UpdatePhase = "idle";
  /** Where the apply under way is, if one is. */
  #applyPhase: UpdatePhase | null = null;
  #checks = 0;
  #deploys = 0;
  #available: Candidate | null = null;
  #progress: UpdateStatus["progress"] = null;
  #lastCheck: string | null = null;
  #lastError: string | null = null;
  #lastErrorCode: string | null = null;
  #state?: BootState;
  /** TUF refreshes (checks, the start of an apply, module deploys) take turns. */
  #refreshing: Promise<unknown> = Promise.resolve();
  /** Module deploys take turns. */
  #deploying: Promise<unknown> = Promise.resolve();
  #apply?: { run: Promise<ApplyResult>; cancel: AbortController };
  /** A restart into another slot was requested (after a switch or a rollback). */
  #restarting = false;
  readonly #closed = new AbortController();

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

  /** The current phase: the apply's step while one runs, else "checking" or the last outcome. */
  get phase(): UpdatePhase {
    return this.#applyPhase ??
      (this.#deploys > 0 ? "downloading" : this.#checks > 0 ? "checking" : this.#base);
  }

  /** Progress of the download under way, if any. */
  get progress(): UpdateStatus["progress"] {
    return this.#progress;
  }

  /** Sets the phase (the component sets "trial" and back). */
  setPhase(p: UpdatePhase): void {
    this.#base = p;
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
      phase: this.phase,
      current: await this.running(),
      available: this.#available,
      active: s.active,
      previous: s.previous,
      slots: s.slots,
      trial: s.trial,
      progress: this.#progress,
      last_check: this.#lastCheck,
      last_error: this.#lastError,
      last_error_code: this.#lastErrorCode,
      last_rollback: s.last_rollback,
      configured: this.configured,
    };
  }

  /**
   * Cancels whatever runs (apply, module deploy, metadata refresh) and
   * refuses new checks, applies and deploys: the shutdown. Resolves once
   * they have stopped; partial downloads stay for the next start.
   */
  async close(): Promise<void> {
    if (!this.#closed.signal.aborted) {
      this.#closed.abort(new UpdateCancelledError("cancelled: edged is shutting down"));
    }
    await Promise.allSettled([this.#apply?.run, this.#deploying, this.#refreshing]);
  }

  /** Runs `fn` after the TUF refreshes before it (one at a time). */
  #refreshTurn<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#refreshing.then(fn, fn);
    this.#refreshing = run.catch(() => {});
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
      const fetcher = this.#o.fetcher ??
        new HttpFetcher({ idleTimeoutMs: this.#o.idleTimeoutMs ?? 30000 });
      this.#client = new TufClient({
        metadataDir: this.store.tufDir,
        metadataBaseUrl: `${base}metadata/`,
        targetBaseUrl: `${base}targets/`,
        fetcher: abortable(fetcher, this.#closed.signal),
      });
    }
    return this.#client;
  }

  /** Checks the repository for a newer release this device should take. */
  check(): Promise<CheckResult> {
    return this.#track("check", async () => {
      this.#closed.signal.throwIfAborted();
      this.#checks++;
      try {
        return await this.#refreshTurn(() => this.#check());
      } finally {
        this.#checks--;
      }
    });
  }

  async #track<T>(operation: "check" | "apply" | "deploy", fn: () => Promise<T>): Promise<T> {
    try {
      const r = await fn();
      if (this.#base !== "restarting" && this.#base !== "trial") this.#base = "idle";
      this.#lastError = null;
      this.#lastErrorCode = null;
      return r;
    } catch (err) {
      this.#base = "failed";
      this.#lastError = (err as Error).message;
      this.#lastErrorCode = errorCode(err).code;
      log.error("update {operation} failed: {error}", {
        operation,
        error: (err as Error).message,
      });
      this.#o.onFailure?.(operation, err);
      throw err;
    }
  }

  /** TUF refresh and the choice of a release; call in a refresh turn. */
  async #check(): Promise<CheckResult> {
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
            if (st.active === s.active) st.slots[s.active!]!.version = run.version;
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
    log.info("update check: running {current}, available {available}", {
      current: run.version,
      available: available?.version ?? "none",
    });
    return { current: run.version, available, skipped: skipped.length ? skipped : undefined };
  }

  /**
   * Checks, downloads (delta when one maps the running digest, else the whole
   * release), stages and verifies it beside the slots, switches, and asks for
   * a restart. Refused while the running version is still a trial. While an
   * apply runs, another call joins it.
   */
  apply(): Promise<ApplyResult> {
    if (this.#apply) return this.#apply.run;
    const cancel = new AbortController();
    const signal = AbortSignal.any([cancel.signal, this.#closed.signal]);
    const run = this.#track("apply", () => this.#applyNow(signal)).finally(() => {
      this.#apply = undefined;
      this.#applyPhase = null;
      this.#progress = null;
    });
    this.#apply = { run, cancel };
    return run;
  }

  /** Cancels the apply under way, if any, and waits until it has stopped. */
  async #cancelApply(why: string): Promise<void> {
    const a = this.#apply;
    if (!a) return;
    a.cancel.abort(new UpdateCancelledError(`update cancelled: ${why}`));
    await a.run.catch(() => {});
  }

  async #applyNow(signal: AbortSignal): Promise<ApplyResult> {
    signal.throwIfAborted();
    this.#applyPhase = "checking";
    const s0 = await this.loadState();
    if (s0.trial && s0.trial.slot === s0.active) {
      throw new UpdateStateError(
        `the running version ${s0.trial.version} is still on trial; apply after it is confirmed`,
      );
    }
    // Everything later steps need from the metadata is read in this turn:
    // a check running during the download may refresh it meanwhile.
    const plan = await this.#refreshTurn(async () => {
      signal.throwIfAborted();
      const { available } = await this.#check();
      if (!available) return undefined;
      const client = await this.#tuf();
      return {
        client,
        available,
        release: await client.requireTargetInfo(available.path),
        delta: available.delta ? await client.requireTargetInfo(available.delta.path) : undefined,
      };
    });
    if (!plan) return { outcome: "up-to-date" };
    const { client, available, release, delta } = plan;
    const step = this.#o.onStep ?? (() => {});
    step("checked");
    const sha = release.hashes.sha256;
    await this.store.ensure();
    // Partial downloads of releases no longer wanted would only take space.
    await this.#cleanDownloads([sha, delta?.hashes.sha256]);

    // The release is staged beside the slots; the slots are not touched.
    const staged = await stageRelease({
      store: this.store,
      client,
      release,
      delta,
      source: this.#runningBinary(s0),
      signal,
      download: (info, dest) => this.#download(client, info, signal, { step, dest }),
      onInstalling: () => this.#applyPhase = "installing",
      onPatching: () => step("patching"),
    });
    step("staged");

    // The last moment a rollback or the shutdown can stop the apply.
    signal.throwIfAborted();
    this.#applyPhase = "switching";
    const { slot, state } = await switchToStaged(
      this.store,
      { path: staged.path, version: available.version, sha256: sha, source: staged.method },
      () => step("switched"),
    );
    step("installed");
    this.#state = state;
    await this.store.linkCurrent(state);
    await this.#cleanDownloads();
    this.#progress = null;
    this.#base = "restarting";
    this.#restarting = true;
    log.info("installed {version} into slot {slot} by {method}; restarting", {
      version: available.version,
      slot,
      method: staged.method,
    });
    this.#o.requestRestart?.(`update to ${available.version}`);
    return {
      outcome: "installed",
      version: available.version,
      slot,
      method: staged.method,
      deltaFallback: staged.deltaFallback,
      fetched: staged.fetched,
    };
  }

  /** The lowest average rate a download may take before it is given up (resumable). */
  #minRate(): number {
    const floor = this.#o.minRateBytesPerS ?? 8192;
    const limit = this.#o.rateLimit ?? 0;
    return limit > 0 ? Math.min(floor, limit / 2) : floor;
  }

  /**
   * Downloads and verifies one target: to `dest` (by default beside the
   * other downloads); `step` is given when the download is the apply's.
   */
  async #download(
    client: TufClient,
    info: TargetInfo,
    signal: AbortSignal,
    o: { step?: (s: ApplyStep) => void; dest?: string } = {},
  ): Promise<DownloadResult> {
    if (o.step) this.#applyPhase = "downloading";
    const sha = info.hashes.sha256;
    if (!sha) throw new UpdateError(`${info.path} lists no sha256`);
    const started = performance.now();
    let first = true;
    const res = await download({
      url: client.targetUrl(info),
      target: info.path,
      dest: o.dest ?? join(this.store.downloadsDir, `${sha}-${basename(info.path)}`),
      length: info.length,
      sha256: sha,
      bucket: this.#bucket,
      retries: this.#o.retries,
      idleTimeoutMs: this.#o.idleTimeoutMs,
      minBytesPerSecond: this.#minRate(),
      backoffMs: this.#o.backoffMs,
      signal,
      onProgress: (p: DownloadProgress) => {
        const secs = (performance.now() - started) / 1000;
        this.#progress = {
          target: info.path,
          received: p.received,
          total: p.total,
          resumed_from: p.resumedFrom,
          bytes_per_second: secs > 0 ? Math.round((p.received - p.resumedFrom) / secs) : 0,
        };
        if (first) o.step?.("downloading");
        first = false;
      },
    });
    // TUF 5.7.3: every listed hash and the length, before use.
    await verifyTarget(client, info, res.path);
    return res;
  }

  /** Removes release downloads, except those of the targets with digests in `keep`. */
  async #cleanDownloads(keep: (string | undefined)[] = []): Promise<void> {
    for await (const e of Deno.readDir(this.store.downloadsDir)) {
      if (!e.isFile || keep.some((sha) => sha && e.name.startsWith(sha))) continue;
      await Deno.remove(join(this.store.downloadsDir, e.name)).catch(() => {});
    }
  }

  /**
   * Rolls back to the previous slot now (manual) and asks for a restart.
   * The version rolled back from stays installed as the previous slot. An
   * apply under way is cancelled first (its download stays for later).
   */
  async rollback(reason = "requested by operator"): Promise<BootState> {
    await this.#cancelApply("a rollback was requested");
    if (this.#restarting) {
      throw new UpdateStateError("edged is already restarting into another version; retry after");
    }
    const s = await this.store.update((st) => rolledBack(st, reason, { keepFrom: !st.trial }));
    await this.store.linkCurrent(s);
    this.#state = s;
    this.#base = "restarting";
    this.#restarting = true;
    log.warning("rolled back to {version}: {reason}", {
      version: s.last_rollback?.to,
      reason,
    });
    this.#o.requestRestart?.(`rollback to ${s.last_rollback?.to}`);
    return s;
  }

  /**
   * Installs module `name` from the repository (newest version, or
   * `version`): a TUF target verified like any other, then handed to the
   * sandbox, which validates it and hot-swaps it in. `accept` sees the version
   * found before anything is downloaded, and throws to refuse it (policy).
   */
  deployModule(
    name: string,
    version?: string,
    accept?: (version: string) => void,
  ): Promise<{ name: string; version: string }> {
    const turn = this.#deploying.then(() =>
      this.#track("deploy", () => this.#deploy(name, version, accept))
    );
    this.#deploying = turn.catch(() => {});
    return turn;
  }

  async #deploy(
    name: string,
    version?: string,
    accept?: (version: string) => void,
  ): Promise<{ name: string; version: string }> {
    const signal = this.#closed.signal;
    signal.throwIfAborted();
    if (!this.#o.installModule) throw new UpdateError("no module host to install into");
    this.#deploys++;
    try {
      const { client, info, custom } = await this.#refreshTurn(async () => {
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
        return { client, info, custom };
      });
      accept?.(custom.version);
      await this.store.ensure();
      const sha = info.hashes.sha256;
      const file = await this.#download(client, info, signal, {
        dest: join(this.store.moduleDownloadsDir, `${sha}-${basename(info.path)}`),
      });
      const wasm = await Deno.readFile(file.path);
      await this.#o.installModule(custom.manifest, wasm);
      await Deno.remove(file.path).catch(() => {});
      const v = custom.version;
      log.info("deployed module {name} {version} from the repository", { name, version: v });
      return { name, version: v };
    } finally {
      this.#deploys--;
      if (!this.#apply) this.#progress = null;
    }
  }

  /**
   * Installs model `name` from the repository (newest version, or
   * `version`), by BSDIFF40 delta from the installed version when the
   * repository has one (see `model_deploy.ts`); deploys run one at a time,
   * like module deploys. `accept` sees the version found before anything is
   * downloaded, and throws to refuse it (policy).
   */
  deployModel(
    name: string,
    version?: string,
    accept?: (version: string) => void,
  ): Promise<{ name: string; version: string; method: "delta" | "full" | "unchanged" }> {
    const turn = this.#deploying.then(() =>
      this.#track("deploy", () => this.#deployModel(name, version, accept))
    );
    this.#deploying = turn.catch(() => {});
    return turn;
  }

  async #deployModel(
    name: string,
    version?: string,
    accept?: (version: string) => void,
  ): Promise<{ name: string; version: string; method: "delta" | "full" | "unchanged" }> {
    const signal = this.#closed.signal;
    signal.throwIfAborted();
    const install = this.#o.installModel;
    if (!install) throw new UpdateError("no model store to install into");
    this.#deploys++;
    try {
      const { client, info, targets } = await this.#refreshTurn(async () => {
        const client = await this.#tuf();
        await client.refresh();
        const targets = client.listTargets().map((t) => ({
          path: t.path,
          custom: parseCustom(t.custom),
        }));
        const info = await client.requireTargetInfo(pickModel(targets, name, version));
        return { client, info, targets };
      });
      const installed = await this.#o.installedModel?.(name);
      const listed = parseCustom(info.custom);
      if (installed?.sha256 === info.hashes.sha256 && listed?.kind === "model") {
        return { name, version: listed.version, method: "unchanged" };
      }
      if (listed?.kind === "model") accept?.(listed.version);
      await this.store.ensure();
      const got = await fetchModel({
        client,
        info,
        targets,
        installed,
        dir: this.store.moduleDownloadsDir,
        download: (i) =>
          this.#download(client, i, signal, {
            dest: join(this.store.moduleDownloadsDir, `${i.hashes.sha256}-${basename(i.path)}`),
          }),
      });
      try {
        await install(name, await Deno.readFile(got.path), got.custom.version);
      } finally {
        await Deno.remove(got.path).catch(() => {});
      }
      log.info("deployed model {name} {version} from the repository ({method})", {
        name,
        version: got.custom.version,
        method: got.method,
      });
      return { name, version: got.custom.version, method: got.method };
    } finally {
      this.#deploys--;
      if (!this.#apply) this.#progress = null;
    }
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
    await this.#cancelApply("the running version failed its trial");
    const s = await this.store.update((st) => rolledBack(st, reason));
    await this.store.linkCurrent(s);
    this.#state = s;
    this.#base = "restarting";
    this.#restarting = true;
    this.#lastError = reason;
    this.#lastErrorCode = null;
    this.#o.requestRestart?.(`rollback: ${reason}`);
  }
}

/**
 * `fetcher` whose calls reject as soon as `signal` aborts (the shutdown),
 * instead of when the request's own timeouts end it.
 */
function abortable(fetcher: Fetcher, signal: AbortSignal): Fetcher {
  const race = <T>(p: Promise<T>): Promise<T> => {
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  };
  return {
    fetchBytes: (url, maxLength) => race(fetcher.fetchBytes(url, maxLength)),
    fetchToFile: (url, path, maxLength) => race(fetcher.fetchToFile(url, path, maxLength)),
  };
}
