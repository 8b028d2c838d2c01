/**
 * Model deploys (`Updater.deployModel`): which target to take, and how to
 * get its bytes. A BSDIFF40 model delta is used when the repository has one
 * from the installed version's digest to the chosen version's; otherwise (or
 * when the delta or the patch fails) the whole model is downloaded. Either
 * way the result is verified against the model's TUF entry before it is
 * handed to the model store, whose engine validates it again.
 *
 * @module
 */
import { getLogger } from "../../lib/mod.ts";
import { join } from "node:path";
// ota/delta loads only when a model delta is applied, not in an idle edged.
import type { TargetInfo, TufClient } from "../tuf/mod.ts";
import { type ModelCustom, parseCustom, type TargetCustom } from "../contract.ts";
import type { DownloadResult } from "./download.ts";
import { UpdateTargetMissingError } from "./errors.ts";
import { compareVersions } from "./policy.ts";
import { verifyTarget } from "./stage.ts";

const log = getLogger(["edged", "update"]);

/** A target path with its parsed `custom`. */
export interface ListedTarget {
  path: string;
  custom: TargetCustom | undefined;
}

/** The newest version of model `name` (or exactly `version`). */
export function pickModel(targets: ListedTarget[], name: string, version?: string): string {
  const found = targets
    .flatMap((t) => (t.custom?.kind === "model" ? [{ path: t.path, custom: t.custom }] : []))
    .filter((t) =>
      t.custom.name === name && (version === undefined || t.custom.version === version)
    )
    .sort((a, b) => compareVersions(b.custom.version, a.custom.version));
  if (found.length === 0) {
    throw new UpdateTargetMissingError(
      `the repository has no model ${name}${version ? ` version ${version}` : ""}`,
    );
  }
  return found[0].path;
}

/** What {@link fetchModel} needs. */
export interface FetchModelOptions {
  client: TufClient;
  /** The chosen model's trusted entry. */
  info: TargetInfo;
  targets: ListedTarget[];
  /** The installed version's digest and file, if any. */
  installed?: { sha256: string; path: string };
  /** Directory for the patched file. */
  dir: string;
  /** Downloads and verifies a target (the updater's resumable, rate-limited download). */
  download(info: TargetInfo): Promise<DownloadResult>;
}

/**
 * The chosen model as a verified file, by delta when possible.
 * @returns the file (the caller removes it) and how it was obtained.
 */
export async function fetchModel(
  o: FetchModelOptions,
): Promise<{ path: string; method: "delta" | "full"; custom: ModelCustom }> {
  const custom = parseCustom(o.info.custom);
  // 5.6.7: the entry used is the one the trusted delegation search returns.
  if (custom?.kind !== "model") {
    throw new UpdateTargetMissingError(`${o.info.path} is not a model target`);
  }
  const want = o.info.hashes.sha256;
  const installed = o.installed;
  const delta = installed &&
    o.targets.find(({ custom: c }) =>
      c?.kind === "model_delta" && c.name === custom.name && c.from_sha256 === installed.sha256 &&
      c.to_sha256 === want
    );
  if (delta && installed) {
    const file = join(o.dir, `${want}-${custom.name}.onnx`);
    try {
      const patch = await o.download(await o.client.requireTargetInfo(delta.path));
      const { applyPatch } = await import("../delta/mod.ts");
      await applyPatch(installed.path, patch.path, file, { expectedSha256: want });
      await Deno.remove(patch.path).catch(() => {});
      await verifyTarget(o.client, o.info, file);
      return { path: file, method: "delta", custom };
    } catch (err) {
      log.warning("model delta {path} not usable ({error}); downloading the whole model", {
        path: delta.path,
        error: (err as Error).message,
      });
      await Deno.remove(file).catch(() => {});
    }
  }
  return { path: (await o.download(o.info)).path, method: "full", custom };
}
