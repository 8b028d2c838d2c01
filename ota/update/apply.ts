/**
 * One apply, step by step (see {@linkcode ApplyStep}): a check, and the
 * trusted entries of the release and its delta read in the same refresh
 * turn; partial downloads of other releases removed; the release staged and
 * verified beside the slots (`stage.ts`); then the switch (`install.ts`),
 * before which a rollback or the shutdown can still stop it, and the
 * `current` link. What the updater reports meanwhile is told through
 * `phase`; the restart that follows is the updater's.
 *
 * @module
 */
import type { TargetInfo, TufClient } from "../tuf/mod.ts";
import { UpdateStateError } from "./errors.ts";
import { switchToStaged } from "./install.ts";
import type { TrustedMetadata } from "./metadata.ts";
import type { Candidate, CheckResult } from "./release_check.ts";
import { type StagedFile, stageRelease } from "./stage.ts";
import type { BootState, SlotName, SlotStore } from "./state.ts";
import type { TargetDownloader } from "./target_download.ts";

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

/** What an apply works with: the updater's parts and what it reports. */
export interface ApplyContext {
  store: SlotStore;
  metadata: TrustedMetadata;
  downloads: TargetDownloader;
  /** Cancels the apply (a rollback, the shutdown). */
  signal: AbortSignal;
  /** Reads the boot state (the updater caches it). */
  loadState(): Promise<BootState>;
  /** The updater's check (it keeps what was found); called in a refresh turn. */
  check(): Promise<CheckResult>;
  /** The running executable's path, if known (source of deltas). */
  runningBinary(s: BootState): string | undefined;
  /** Where the apply is now (the updater's phase). */
  phase(p: "checking" | "downloading" | "installing" | "switching"): void;
  /** Called at each step (the crash tests' hook). */
  step(step: ApplyStep): void;
  /** The switch is done and the slot holds the release: `state` is the boot state now. */
  installed(state: BootState): void;
}

/** A release installed into a slot by {@linkcode applyRelease}; the restart is next. */
export interface InstalledRelease {
  available: Candidate;
  slot: SlotName;
  staged: StagedFile;
}

/**
 * Runs an apply up to the restart (see the module comment); undefined when
 * the device is up to date.
 * @throws {UpdateStateError} while the running version is still a trial.
 */
export async function applyRelease(ctx: ApplyContext): Promise<InstalledRelease | undefined> {
  const { store, metadata, downloads, signal, step } = ctx;
  signal.throwIfAborted();
  ctx.phase("checking");
  const s0 = await ctx.loadState();
  if (s0.trial && s0.trial.slot === s0.active) {
    throw new UpdateStateError(
      `the running version ${s0.trial.version} is still on trial; apply after it is confirmed`,
    );
  }
  // Everything later steps need from the metadata is read in this turn:
  // a check running during the download may refresh it meanwhile.
  const plan: Plan | undefined = await metadata.turn(async () => {
    signal.throwIfAborted();
    const { available } = await ctx.check();
    if (!available) return undefined;
    const client = await metadata.client();
    return {
      client,
      available,
      release: await client.requireTargetInfo(available.path),
      delta: available.delta ? await client.requireTargetInfo(available.delta.path) : undefined,
    };
  });
  if (!plan) return undefined;
  const { client, available, release, delta } = plan;
  step("checked");
  const sha = release.hashes.sha256;
  await store.ensure();
  // Partial downloads of releases no longer wanted would only take space.
  await downloads.clean([sha, delta?.hashes.sha256]);

  // The release is staged beside the slots; the slots are not touched.
  const staged = await stageRelease({
    store,
    client,
    release,
    delta,
    source: ctx.runningBinary(s0),
    signal,
    download: (info, dest) => {
      ctx.phase("downloading");
      return downloads.fetch(client, info, signal, {
        onFirstBytes: () => step("downloading"),
        dest,
      });
    },
    onInstalling: () => ctx.phase("installing"),
    onPatching: () => step("patching"),
  });
  step("staged");

  // The last moment a rollback or the shutdown can stop the apply.
  signal.throwIfAborted();
  ctx.phase("switching");
  const { slot, state } = await switchToStaged(
    store,
    { path: staged.path, version: available.version, sha256: sha, source: staged.method },
    () => step("switched"),
  );
  step("installed");
  ctx.installed(state);
  await store.linkCurrent(state);
  await downloads.clean();
  downloads.clearProgress();
  return { available, slot, staged };
}

/** What an apply takes from the metadata, read in one refresh turn. */
interface Plan {
  client: TufClient;
  available: Candidate;
  release: TargetInfo;
  delta?: TargetInfo;
}
