/**
 * What `edged repo add` publishes: release binaries per target triple with
 * BSDIFF40 deltas from earlier releases, and WebAssembly modules with their
 * manifests. Target paths and `custom` fields are the contract with the
 * device's update pipeline, defined once in `ota/contract.ts`.
 *
 * @module
 */
import { getLogger, sha256Hex } from "../../lib/mod.ts";
import { bsdiff } from "../delta/mod.ts";
import { manifestParser, ModuleValidationError, moduleValidator } from "../../sandbox/mod.ts";
import { RepoError } from "./errors.ts";
import type { AddedTarget, Repository } from "./repository.ts";
import { checkSegment } from "./_util.ts";
import { compareVersions } from "../semver.ts";
import {
  type DeltaCustom,
  deltaPath,
  type ModuleCustom,
  modulePath,
  type ReleaseCustom,
  releasePath,
} from "../contract.ts";

const log = getLogger(["edged", "repo"]);

/** Options of {@link addRelease}. */
export interface AddReleaseOptions {
  /** Rust-style target triple, e.g. "x86_64-unknown-linux-gnu". */
  triple: string;
  /** Release version, e.g. "1.2.0". */
  version: string;
  /** Share of devices that should take this release (0 to 100), stored as `custom.rollout_percent`. */
  rolloutPercent?: number;
  /** Deltas from this many previous releases. @default repo.config.deltas */
  deltas?: number;
  /** Called while each delta is built: its source version and the fraction done (0 to 1). */
  onDeltaProgress?: (fromVersion: string, fraction: number) => void;
}

/**
 * Publishes a release binary for `triple` as target
 * `releases/<triple>/<version>/edged` (custom: kind "release"), plus a
 * BSDIFF40 delta from each of the previous `deltas` releases of the same
 * triple (by version order, older than this one) as
 * `deltas/<triple>/<from>_to_<to>.bsdiff` (custom: kind "delta" with both
 * digests). Deltas not smaller than the release are left out.
 */
export async function addRelease(
  repo: Repository,
  file: string,
  options: AddReleaseOptions,
): Promise<AddedTarget[]> {
  const { triple, version, rolloutPercent, deltas = repo.config.deltas, onDeltaProgress } = options;
  checkSegment("triple", triple);
  checkSegment("version", version);
  if (rolloutPercent !== undefined && !(rolloutPercent >= 0 && rolloutPercent <= 100)) {
    throw new RangeError(`rollout percent must be from 0 to 100, got ${rolloutPercent}`);
  }
  if (!Number.isSafeInteger(deltas) || deltas < 0) {
    throw new RangeError(`deltas must be an integer >= 0, got ${deltas}`);
  }
  const data = await Deno.readFile(file);
  const path = releasePath(triple, version);
  if (repo.targets.targets[path]) {
    throw new RepoError(`release ${version} for ${triple} is already published`);
  }
  const previous = repo.releases(triple)
    .filter((r) => compareVersions(r.version, version) < 0)
    .slice(0, deltas);
  const custom: ReleaseCustom = { kind: "release", triple, version };
  if (rolloutPercent !== undefined) custom.rollout_percent = rolloutPercent;
  const release = await repo.putTarget(path, data, { ...custom });
  const added = [release];
  for (const prev of previous) {
    // Phases weighted by their usual share of bsdiff's time.
    const weights = { sort: [0, 0.3], match: [0.3, 0.6], compress: [0.9, 0.1] } as const;
    const patch = await bsdiff(await repo.readTarget(prev.path), data, {
      onProgress: (phase, f) =>
        onDeltaProgress?.(prev.version, weights[phase][0] + weights[phase][1] * f),
    });
    if (patch.length >= data.length) {
      log.info("delta {from} -> {to} is not smaller than the release; skipped", {
        from: prev.version,
        to: version,
      });
      continue;
    }
    const delta: DeltaCustom = {
      kind: "delta",
      format: "BSDIFF40",
      triple,
      from_version: prev.version,
      to_version: version,
      from_sha256: prev.info.hashes.sha256,
      to_sha256: release.sha256,
    };
    added.push(
      await repo.putTarget(deltaPath(triple, prev.version, version), patch, {
        ...delta,
      }),
    );
  }
  await repo.publishTargets();
  return added;
}

/**
 * Publishes a WebAssembly module as `modules/<name>/<version>/<name>.wasm`
 * with its manifest in `custom.manifest` (kind "module", `sha256` filled
 * in). The module is validated as the runtime would at load time, so a
 * module that cannot load is never published.
 */
export async function addModule(
  repo: Repository,
  wasmFile: string,
  manifestFile: string,
): Promise<AddedTarget> {
  const bytes = await Deno.readFile(wasmFile);
  let manifestJson: Record<string, unknown>;
  try {
    manifestJson = JSON.parse(await Deno.readTextFile(manifestFile));
  } catch (cause) {
    throw new RepoError(`manifest ${manifestFile} is not valid JSON`, { cause });
  }
  try {
    await (await moduleValidator())(bytes, (await manifestParser())(manifestJson));
  } catch (err) {
    if (err instanceof ModuleValidationError) {
      throw new RepoError(`module does not validate: ${err.message}`, { cause: err });
    }
    throw err;
  }
  const name = String(manifestJson.name);
  const version = String(manifestJson.version);
  checkSegment("module name", name);
  checkSegment("module version", version);
  const path = modulePath(name, version);
  if (repo.targets.targets[path]) {
    throw new RepoError(`module ${name} ${version} is already published`);
  }
  const manifest = { ...manifestJson, sha256: await sha256Hex(bytes) };
  const custom: ModuleCustom = { kind: "module", name, version, manifest };
  const added = await repo.putTarget(path, bytes, { ...custom });
  await repo.publishTargets();
  return added;
}
