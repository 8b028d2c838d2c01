/**
 * The contract between the update repository and the device: where each kind
 * of target lives and what its TUF `custom` field holds (docs/releases.md,
 * "Create the repository and its keys"). `edged repo` writes targets through these builders; the
 * device's updater reads them through {@linkcode parseCustom}, so both sides
 * share one definition and a field renamed on one side fails to compile on
 * the other.
 *
 * @example
 * ```ts
 * import { parseCustom, releasePath } from "./contract.ts";
 * releasePath("x86_64-unknown-linux-gnu", "1.2.0"); // "releases/x86_64-unknown-linux-gnu/1.2.0/edged"
 * parseCustom({ kind: "release", triple: "x86_64-unknown-linux-gnu", version: "1.2.0" })?.kind; // "release"
 * ```
 *
 * @module
 */

/** `custom` of a release target ({@linkcode releasePath}). */
export interface ReleaseCustom {
  kind: "release";
  triple: string;
  version: string;
  /** Share of devices (0 to 100) that should take it; absent means all. */
  rollout_percent?: number;
}

/** `custom` of a BSDIFF40 delta target ({@linkcode deltaPath}), naming both digests. */
export interface DeltaCustom {
  kind: "delta";
  format: "BSDIFF40";
  triple: string;
  from_version: string;
  to_version: string;
  /** SHA-256 of the release the patch applies to. */
  from_sha256: string;
  /** SHA-256 of the release the patch produces. */
  to_sha256: string;
}

/** `custom` of a module target ({@linkcode modulePath}). */
export interface ModuleCustom {
  kind: "module";
  name: string;
  version: string;
  /** The module manifest (docs/modules.md, "The ABI (v1)"), `sha256` always set. */
  manifest: Record<string, unknown>;
}

/** One input or output of a model as the repository records it (the engine's report). */
export interface ModelTensor {
  name: string;
  /** Element type, e.g. "float32". */
  type: string;
  /** Dimensions; -1 where the model leaves one open. */
  dims: number[];
}

/** `custom` of a model target ({@linkcode modelPath}): an ONNX model for modules granted `nn`. */
export interface ModelCustom {
  kind: "model";
  name: string;
  version: string;
  inputs: ModelTensor[];
  outputs: ModelTensor[];
}

/** `custom` of a BSDIFF40 delta between two versions of a model ({@linkcode modelDeltaPath}). */
export interface ModelDeltaCustom {
  kind: "model_delta";
  format: "BSDIFF40";
  name: string;
  from_version: string;
  to_version: string;
  /** SHA-256 of the model version the patch applies to. */
  from_sha256: string;
  /** SHA-256 of the model version the patch produces. */
  to_sha256: string;
}

/** Any target's `custom`, told apart by `kind`. */
export type TargetCustom =
  | ReleaseCustom
  | DeltaCustom
  | ModuleCustom
  | ModelCustom
  | ModelDeltaCustom;

/** Path of the release binary of `version` for `triple`. */
export function releasePath(triple: string, version: string): string {
  return `releases/${triple}/${version}/edged`;
}

/** Path of the delta from release `from` to release `to` for `triple`. */
export function deltaPath(triple: string, from: string, to: string): string {
  return `deltas/${triple}/${from}_to_${to}.bsdiff`;
}

/** Path of module `name` at `version`. */
export function modulePath(name: string, version: string): string {
  return `modules/${name}/${version}/${name}.wasm`;
}

/** Path of model `name` at `version`. */
export function modelPath(name: string, version: string): string {
  return `models/${name}/${version}/${name}.onnx`;
}

/** Path of the delta from version `from` to version `to` of model `name`. */
export function modelDeltaPath(name: string, from: string, to: string): string {
  return `deltas/models/${name}/${from}_to_${to}.bsdiff`;
}

const isString = (v: unknown): v is string => typeof v === "string" && v.length > 0;
const isTensors = (v: unknown): v is ModelTensor[] =>
  Array.isArray(v) &&
  v.every((t) =>
    isObject(t) && isString(t.name) && isString(t.type) && Array.isArray(t.dims) &&
    t.dims.every((d) => Number.isInteger(d))
  );
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Reads a target's `custom` as the device does: the typed value when it is a
 * well-formed release, delta, module, model or model delta entry, else undefined (an unknown kind
 * or a malformed entry is not offered to the device; the metadata around it
 * is still verified by TUF).
 */
export function parseCustom(custom: unknown): TargetCustom | undefined {
  if (!isObject(custom)) return undefined;
  switch (custom.kind) {
    case "release": {
      const { triple, version, rollout_percent: pct } = custom;
      if (!isString(triple) || !isString(version)) return undefined;
      if (pct !== undefined && !(typeof pct === "number" && pct >= 0 && pct <= 100)) {
        return undefined;
      }
      return {
        kind: "release",
        triple,
        version,
        ...(pct === undefined ? {} : { rollout_percent: pct }),
      };
    }
    case "delta": {
      const c = custom;
      if (
        c.format !== "BSDIFF40" || !isString(c.triple) || !isString(c.from_version) ||
        !isString(c.to_version) || !isString(c.from_sha256) || !isString(c.to_sha256)
      ) return undefined;
      return {
        kind: "delta",
        format: "BSDIFF40",
        triple: c.triple,
        from_version: c.from_version,
        to_version: c.to_version,
        from_sha256: c.from_sha256,
        to_sha256: c.to_sha256,
      };
    }
    case "module": {
      const { name, version, manifest } = custom;
      if (!isString(name) || !isString(version) || !isObject(manifest)) return undefined;
      return { kind: "module", name, version, manifest };
    }
    case "model": {
      const { name, version, inputs, outputs } = custom;
      if (!isString(name) || !isString(version) || !isTensors(inputs) || !isTensors(outputs)) {
        return undefined;
      }
      return { kind: "model", name, version, inputs, outputs };
    }
    case "model_delta": {
      const c = custom;
      if (
        c.format !== "BSDIFF40" || !isString(c.name) || !isString(c.from_version) ||
        !isString(c.to_version) || !isString(c.from_sha256) || !isString(c.to_sha256)
      ) return undefined;
      return {
        kind: "model_delta",
        format: "BSDIFF40",
        name: c.name,
        from_version: c.from_version,
        to_version: c.to_version,
        from_sha256: c.from_sha256,
        to_sha256: c.to_sha256,
      };
    }
    default:
      return undefined;
  }
}
