/**
 * The choice of a release from freshly refreshed metadata: the newest
 * release for this device's target triple that is newer than what runs, was
 * not rolled back from before, and whose staged rollout admits this device;
 * with the BSDIFF40 delta that turns the running executable into it, when
 * the repository has one. The running executable is recognised by its
 * digest, so a stand-in or factory build learns which release it is.
 *
 * @module
 */
import { getLogger } from "../../lib/mod.ts";
import type { TufClient } from "../tuf/mod.ts";
import { parseCustom } from "../contract.ts";
import { UpdateError } from "./errors.ts";
import { compareVersions, inRollout } from "./policy.ts";
import type { BootState, SlotStore } from "./state.ts";

const log = getLogger(["edged", "update"]);

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

/** What {@linkcode chooseRelease} decides for. */
export interface ReleaseChoiceOptions {
  /** Target triple of this device's releases. */
  triple: string;
  /** Device id, for staged rollouts. */
  deviceId: string;
  /** The boot state now. */
  state: BootState;
  /** Version and digest of what runs now. */
  running: { version: string; sha256: string | null };
  /** Where the active slot's version is corrected when its digest names another release. */
  store: SlotStore;
  /** Called after that correction is written (the updater reads the state again). */
  corrected: () => Promise<unknown>;
}

/** Picks the release to take from `client`'s refreshed targets (see the module comment). */
export async function chooseRelease(
  client: TufClient,
  o: ReleaseChoiceOptions,
): Promise<CheckResult> {
  const s = o.state;
  const run = { ...o.running };
  const targets = Object.fromEntries(client.listTargets().map((t) => [t.path, t]));
  const releases: { path: string; version: string; rollout?: number }[] = [];
  for (const [path, t] of Object.entries(targets)) {
    const c = parseCustom(t.custom);
    if (c?.kind !== "release" || c.triple !== o.triple) continue;
    releases.push({ path, version: c.version, rollout: c.rollout_percent });
    // Identify the running executable by digest: a stand-in or factory
    // build may not know which published release it is.
    if (run.sha256 && t.hashes.sha256 === run.sha256 && run.version !== c.version) {
      run.version = c.version;
      if (s.active) {
        await o.store.update((st) => {
          if (st.active === s.active) st.slots[s.active!]!.version = run.version;
          return st;
        });
        await o.corrected();
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
    if (!(await inRollout(o.deviceId, r.version, r.rollout))) {
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
        c?.kind === "delta" && c.format === "BSDIFF40" && c.triple === o.triple &&
        c.to_sha256 === sha && run.sha256 !== null && c.from_sha256 === run.sha256
      ) {
        available.delta = { path, length: t.length };
        break;
      }
    }
  }
  log.info("update check: running {current}, available {available}", {
    current: run.version,
    available: available?.version ?? "none",
  });
  return { current: run.version, available, skipped: skipped.length ? skipped : undefined };
}
