/**
 * Staging, the part of an apply before the switch: the release is obtained
 * (by BSDIFF40 delta from the running executable when the repository has
 * one, else as a whole download) into {@linkcode SlotStore.stagedPath}
 * beside the slots and verified against the trusted metadata. Nothing here
 * touches a slot or `state.json`, so a failure or a crash at any point
 * leaves the device's versions and its rollback target as they were.
 *
 * @module
 */
// ota/delta and ota/tuf load only when an update is staged, not in an idle edged.
import type { TargetInfo, TufClient } from "../tuf/mod.ts";
import { executableMode, getLogger, isNoSpace, sha256File } from "../../lib/mod.ts";
import type { DownloadResult } from "./download.ts";
import { DiskSpaceError, UpdateVerificationError } from "./errors.ts";
import { freeBytes } from "./_fs.ts";
import type { SlotStore } from "./state.ts";

const log = getLogger(["edged", "update"]);

/** Options of {@linkcode stageRelease}. */
export interface StageOptions {
  /** The update area. */
  store: SlotStore;
  /** The TUF client the targets were resolved with. */
  client: TufClient;
  /** The release's trusted target entry. */
  release: TargetInfo;
  /** The trusted entry of a delta from the running executable, if the repository has one. */
  delta?: TargetInfo;
  /** The running executable (the delta's source), if known. */
  source?: string;
  /** Cancels the staging (a rollback, the shutdown). */
  signal: AbortSignal;
  /** Downloads and verifies a target, to `dest` when given (the updater's downloader). */
  download: (info: TargetInfo, dest?: string) => Promise<DownloadResult>;
  /** Called when the bytes are fetched and writing the release begins. */
  onInstalling?: () => void;
  /** Called once when part of the delta's output is written (the crash tests' hook). */
  onPatching?: () => void;
}

/** A release staged and verified beside the slots. */
export interface StagedFile {
  /** {@linkcode SlotStore.stagedPath} of the release. */
  path: string;
  /** How it was obtained. */
  method: "delta" | "full";
  /** Why the delta was not used, when it was not. */
  deltaFallback?: string;
  /** Bytes fetched over the network. */
  fetched: number;
}

/** Stages `release` (see the module comment); resolves with the verified file. */
export async function stageRelease(o: StageOptions): Promise<StagedFile> {
  const { store, client, release, delta, source, signal } = o;
  const sha = release.hashes.sha256;
  const staged = store.stagedPath(sha);
  let method: "delta" | "full" = "full";
  let deltaFallback: string | undefined;
  let fetched = 0;
  if ((await sha256File(staged)) === sha) {
    deltaFallback = "the release was staged by an earlier attempt that was interrupted";
  } else if (delta && source) {
    try {
      const patch = await o.download(delta);
      fetched += patch.fetched;
      o.onInstalling?.();
      await requireSpace(store.downloadsDir, release.length);
      let reported = false;
      // BSDIFF40 output into the staged file (temp file, fsync, rename),
      // checked against the release digest before the rename; the header
      // may not announce more than the release's signed length.
      const { applyPatch } = await import("../delta/mod.ts");
      await applyPatch(source, patch.path, staged, {
        mode: executableMode(),
        expectedSha256: sha,
        maxNewSize: release.length,
        signal,
        onProgress: (written, total) => {
          if (!reported && written < total) o.onPatching?.();
          reported = true;
        },
      });
      method = "delta";
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      await Deno.remove(staged).catch(() => {});
      if (err instanceof DiskSpaceError) throw err;
      if (isNoSpace(err)) {
        throw new DiskSpaceError(`patching ${delta.path}: the disk is full`, { cause: err });
      }
      deltaFallback = (err as Error).message;
      log.warning("delta {path} not usable ({error}); downloading the whole release", {
        path: delta.path,
        error: deltaFallback,
      });
    }
  } else if (!delta) {
    deltaFallback = "no delta from the running executable's digest";
  }
  if (method === "full") {
    const full = await o.download(release, staged);
    fetched += full.fetched;
    o.onInstalling?.();
    await Deno.chmod(staged, executableMode());
  }
  // TUF 5.7.3 on exactly the bytes that go into the slot.
  await verifyTarget(client, release, staged);
  return { path: staged, method, deltaFallback, fetched };
}

/**
 * TUF 5.7.3 on a local file: every listed hash and the length. A mismatch
 * removes the file and is an {@linkcode UpdateVerificationError}.
 */
export async function verifyTarget(client: TufClient, info: TargetInfo, path: string) {
  try {
    await client.verifyTargetFile(info, path);
  } catch (cause) {
    if (!(cause instanceof (await import("../tuf/mod.ts")).TufError)) throw cause;
    const actual = {
      sha256: (await sha256File(path).catch(() => undefined)) ?? null,
      length: (await Deno.stat(path).catch(() => ({ size: -1 }))).size,
    };
    await Deno.remove(path).catch(() => {});
    throw new UpdateVerificationError(
      info.path,
      { sha256: info.hashes.sha256, length: info.length },
      actual,
      { cause, detail: cause.message },
    );
  }
}

/** Throws {@link DiskSpaceError} unless `bytes` plus a 16 MiB reserve fit in `dir`. */
async function requireSpace(dir: string, bytes: number): Promise<void> {
  const free = await freeBytes(dir);
  const need = bytes + (16 << 20);
  if (free < need) {
    throw new DiskSpaceError(`${dir} has ${free} bytes free; installing needs ${need}`);
  }
}
