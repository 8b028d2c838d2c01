/**
 * The switch of an install, the one step that changes what the device
 * starts. The release has been downloaded or patched and verified beside
 * the slots (a staged file); then:
 *
 * 1. one atomic replacement of `state.json` makes the inactive slot active
 *    with the staged release's version and digest, the running slot the
 *    rollback target (`previous`), and the new version a trial. The record
 *    of the release the inactive slot held is dropped at this instant and
 *    not before, so until here it stays the rollback target;
 * 2. the staged file is renamed onto the slot's executable (both
 *    directories fsync'd).
 *
 * A crash before 1 leaves everything as it was. A crash between 1 and 2
 * leaves a state whose active slot still holds the old bytes next to the
 * staged release with the recorded digest; the boot step completes the
 * rename ({@linkcode SlotStore.finishInstall}). A crash after 2 starts the new
 * version on trial.
 *
 * @module
 */
import { dirname } from "node:path";
import { isNoSpace, sha256File, syncDir } from "../../lib/mod.ts";
import { DiskSpaceError, InstallError } from "./errors.ts";
import {
  type BootState,
  otherSlot,
  type SlotInfo,
  type SlotName,
  type SlotStore,
} from "./state.ts";

/** A verified release waiting beside the slots. */
export interface StagedRelease {
  /** The staged file ({@linkcode SlotStore.stagedPath}), executable. */
  path: string;
  /** Its version. */
  version: string;
  /** Its SHA-256 (already verified against the trusted metadata). */
  sha256: string;
  /** How it was obtained. */
  source: SlotInfo["source"];
}

/**
 * Switches to `release` (steps 1 and 2 above); `onSwitched` runs between
 * them. Resolves with the slot it went into and the state after the switch.
 * When the rename fails the state from before is written back (the slot
 * still holds its old bytes), and the error is an {@linkcode InstallError}.
 */
export async function switchToStaged(
  store: SlotStore,
  release: StagedRelease,
  onSwitched?: () => void,
): Promise<{ slot: SlotName; state: BootState }> {
  let before!: BootState;
  let slot!: SlotName;
  const now = new Date().toISOString();
  const switched = store.update((s) => {
    before = s;
    slot = s.active ? otherSlot(s.active) : "a";
    return {
      ...s,
      active: slot,
      previous: s.active,
      slots: {
        ...s.slots,
        [slot]: {
          version: release.version,
          sha256: release.sha256,
          installed_at: now,
          source: release.source,
        },
      },
      trial: { slot, version: release.version, attempts: 0, since: now },
    };
  });
  const state = await switched.catch((err) => {
    // state.json is replaced by rename only: a full disk leaves the old one.
    if (!isNoSpace(err)) throw err;
    throw new DiskSpaceError(`the disk is full: cannot write ${store.statePath}`, { cause: err });
  });
  onSwitched?.();
  const dest = store.binaryPath(slot);
  try {
    await Deno.rename(release.path, dest);
    await syncDir(store.slotDir(slot));
    await syncDir(dirname(release.path));
  } catch (cause) {
    // A rename either happened or not: only when the slot does not hold the
    // new release is the old state (and its rollback target) true again.
    if ((await sha256File(dest).catch(() => undefined)) !== release.sha256) {
      await store.update(() => before).catch(() => {});
      throw new InstallError(
        `moving ${release.version} onto slot ${slot} failed: ${(cause as Error).message}`,
        { cause },
      );
    }
  }
  return { slot, state };
}
