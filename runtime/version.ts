/**
 * What this build is: version, target triple and runtime versions.
 *
 * @module
 */
import denoJson from "../deno.json" with { type: "json" };

/** The edged release version. */
export const VERSION: string = denoJson.version;

/** Build facts reported by `edged version --json` and the status topic. */
export interface BuildInfo {
  version: string;
  target: string;
  deno: string;
  v8: string;
  typescript: string;
  /** True when running as a `deno compile` binary. */
  compiled: boolean;
}

/** Facts about the running build. */
export function buildInfo(): BuildInfo {
  return {
    version: VERSION,
    target: Deno.build.target,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    compiled: Deno.build.standalone === true,
  };
}
