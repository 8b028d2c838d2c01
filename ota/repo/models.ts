/**
 * What `edged repo add --model` publishes: an ONNX model for modules granted
 * `nn` as target `models/<name>/<version>/<name>.onnx` (custom: kind
 * "model" with its inputs and outputs), plus a BSDIFF40 delta from each of
 * the previous `deltas` versions of the same model as
 * `deltas/models/<name>/<from>_to_<to>.bsdiff` (custom: kind "model_delta"
 * with both digests). The model is validated by creating a session, as the
 * device does when it installs it, so a model that cannot load is never
 * published.
 *
 * @module
 */
import { bsdiff } from "../delta/mod.ts";
import { EngineError, MODEL_NAME_RE, nnEngineClass } from "../../sandbox/mod.ts";
import { type ModelCustom, type ModelDeltaCustom, modelDeltaPath, modelPath } from "../contract.ts";
import { compareVersions } from "../semver.ts";
import { RepoError } from "./errors.ts";
import type { AddedTarget, Repository } from "./repository.ts";
import { checkSegment } from "./_util.ts";

/** Options of {@link addModel}. */
export interface AddModelOptions {
  name: string;
  version: string;
  /** Deltas from this many previous versions. @default repo.config.deltas */
  deltas?: number;
  /** Engine memory for the validation. @default 1 GiB */
  memoryBytes?: number;
}

/** Publishes model `file` (see the module comment). */
export async function addModel(
  repo: Repository,
  file: string,
  options: AddModelOptions,
): Promise<AddedTarget[]> {
  const { name, version, deltas = repo.config.deltas, memoryBytes = 1 << 30 } = options;
  if (!MODEL_NAME_RE.test(name)) {
    throw new RepoError(
      `model name must be 1-63 of a-z 0-9 - _, starting alphanumeric, got "${name}"`,
    );
  }
  checkSegment("model version", version);
  const path = modelPath(name, version);
  if (repo.targets.targets[path]) {
    throw new RepoError(`model ${name} ${version} is already published`);
  }
  const data = await Deno.readFile(file);
  const engine = new (await nnEngineClass())({ memoryBytes });
  let info;
  try {
    ({ info } = await engine.validate(data));
  } catch (err) {
    if (err instanceof EngineError) {
      throw new RepoError(`model does not load: ${err.message}`, { cause: err });
    }
    throw err;
  } finally {
    engine.stop();
  }
  const previous = Object.entries(repo.targets.targets)
    .filter(([, t]) => t.custom?.kind === "model" && t.custom.name === name)
    .map(([p, t]) => ({ path: p, version: String(t.custom!.version), sha256: t.hashes.sha256 }))
    .filter((p) => compareVersions(p.version, version) < 0)
    .sort((a, b) => compareVersions(b.version, a.version))
    .slice(0, deltas);
  const custom: ModelCustom = { kind: "model", name, version, ...info };
  const model = await repo.putTarget(path, data, { ...custom });
  const added = [model];
  for (const prev of previous) {
    const patch = await bsdiff(await repo.readTarget(prev.path), data);
    if (patch.length >= data.length) continue; // no smaller than the model itself
    const delta: ModelDeltaCustom = {
      kind: "model_delta",
      format: "BSDIFF40",
      name,
      from_version: prev.version,
      to_version: version,
      from_sha256: prev.sha256,
      to_sha256: model.sha256,
    };
    added.push(
      await repo.putTarget(modelDeltaPath(name, prev.version, version), patch, {
        ...delta,
      }),
    );
  }
  await repo.publishTargets();
  return added;
}
