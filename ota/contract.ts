/**
 * The contract between the update repository and the device: where each kind
 * of target lives and what its TUF `custom` field holds (MISSION.md, "Update
 * repository"). `edged repo` writes targets through these builders; the
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
  /** The module manifest (MISSION.md "Module ABI v1"), `sha256` always set. */
  manifest: Record<string, unknown>;
}

/** Any target's `custom`, told apart by `kind`. */
export type TargetCustom = ReleaseCustom | DeltaCustom | ModuleCustom;

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

const isString = (v: unknown): v is string => typeof v === "string" && v.length > 0;
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Reads a target's `custom` as the device does: the typed value when it is a
 * well-formed release, delta or module entry, else undefined (an unknown kind
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
    default:
      return undefined;
  }
}
