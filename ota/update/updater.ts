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
 * The updater keeps the state machine and composes the parts that do the
 * work: the trusted metadata and its refresh turns (`metadata.ts`), the
 * choice of a release (`release_check.ts`), target downloads
 * (`target_download.ts`), the steps of an apply (`apply.ts`) and module and
 * model deploys (`deploy.ts`).
 *
 * @module
 */
import type { Fetcher } from "../tuf/mod.ts";
import { UpdateCancelledError, UpdateError, UpdateStateError } from "./errors.ts";
import { errorCode, getLogger, sha256File } from "../../lib/mod.ts";
import { applyRelease, type ApplyResult, type ApplyStep } from "./apply.ts";
import { type BootState, rolledBack, type SlotName, SlotStore } from "./state.ts";
import { confirmBoot } from "./boot.ts";
import { TrustedMetadata } from "./metadata.ts";
import { type Candidate, type CheckResult, chooseRelease } from "./release_check.ts";
import { TargetDownloader } from "./target_download.ts";
import { deployModel, deployModule, type DeployParts } from "./deploy.ts";

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

/** The update pipeline of one device. */
export class Updater {
  /** The slot layout and state of this data directory. */
  readonly store: SlotStore;
  readonly #o: UpdaterOptions;
  readonly #metadata: TrustedMetadata;
  readonly #downloads: TargetDownloader;
  /** What module and model deploys work with. */
  readonly #parts: DeployParts;
  /** Outcome of the last operation, or "trial"/"restarting". */
  #base: UpdatePhase = "idle";
  /** Where the apply under way is, if one is. */
  #applyPhase: UpdatePhase | null = null;
  #checks = 0;
  #deploys = 0;
  #available: Candidate | null = null;
  #lastCheck: string | null = null;
  #lastError: string | null = null;
  #lastErrorCode: string | null = null;
  #state?: BootState;
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
    const signal = this.#closed.signal;
    this.#metadata = new TrustedMetadata({ ...options, store: this.store, signal });
    this.#downloads = new TargetDownloader({ ...options, store: this.store });
    this.#parts = {
      metadata: this.#metadata,
      downloads: this.#downloads,
      store: this.store,
      signal,
    };
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
    return this.#downloads.progress;
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
      progress: this.#downloads.progress,
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
    await Promise.allSettled([this.#apply?.run, this.#deploying, this.#metadata.settled]);
  }

  /** Checks the repository for a newer release this device should take. */
  check(): Promise<CheckResult> {
    return this.#track("check", async () => {
      this.#closed.signal.throwIfAborted();
      this.#checks++;
      try {
        return await this.#metadata.turn(() => this.#check());
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
    const client = await this.#metadata.client();
    // TUF 5.3-5.6: every check starts from a full, verified refresh.
    await client.refresh();
    this.#lastCheck = new Date().toISOString();
    const result = await chooseRelease(client, {
      triple: this.#o.triple,
      deviceId: this.#o.deviceId,
      state: await this.loadState(),
      running: await this.running(),
      store: this.store,
      corrected: () => this.loadState(),
    });
    this.#available = result.available;
    return result;
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
      this.#downloads.clearProgress();
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
    const done = await applyRelease({
      store: this.store,
      metadata: this.#metadata,
      downloads: this.#downloads,
      signal,
      loadState: () => this.loadState(),
      check: () => this.#check(),
      runningBinary: (s) => this.#runningBinary(s),
      phase: (p) => this.#applyPhase = p,
      step: (step) => this.#o.onStep?.(step),
      installed: (state) => this.#state = state,
    });
    if (!done) return { outcome: "up-to-date" };
    const { available, slot, staged } = done;
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
    return this.#deployTurn(() => {
      const install = this.#o.installModule;
      if (!install) throw new UpdateError("no module host to install into");
      return install;
    }, (install) => deployModule(this.#parts, install, name, version, accept));
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
    return this.#deployTurn(() => {
      const install = this.#o.installModel;
      if (!install) throw new UpdateError("no model store to install into");
      return install;
    }, (install) =>
      deployModel(
        this.#parts,
        { install, installed: this.#o.installedModel },
        name,
        version,
        accept,
      ));
  }

  /**
   * Runs a deploy after the deploys before it, tracked like every operation
   * and counted while it runs (the phase shows "downloading"); refused at
   * shutdown or when `target` finds nothing to install into.
   */
  #deployTurn<I, T>(target: () => I, deploy: (into: I) => Promise<T>): Promise<T> {
    const turn = this.#deploying.then(() =>
      this.#track("deploy", async () => {
        this.#closed.signal.throwIfAborted();
        const into = target();
        this.#deploys++;
        try {
          return await deploy(into);
        } finally {
          this.#deploys--;
          if (!this.#apply) this.#downloads.clearProgress();
        }
      })
    );
    this.#deploying = turn.catch(() => {});
    return turn;
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
