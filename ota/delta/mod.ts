/**
 * Binary deltas in the BSDIFF40 format, interchangeable with the classic
 * `bsdiff`/`bspatch` 4.3 tools: a hardened streaming patcher, a diff that
 * writes the same bytes as Debian's bsdiff, atomic file helpers and the
 * `edged delta` command.
 *
 * @module
 */
export { bspatch, type BspatchOptions, type BspatchResult, type PatchInput } from "./bspatch.ts";
export { bsdiff, bsdiffFiles, type BsdiffOptions, bsdiffSync } from "./bsdiff.ts";
export { applyPatch, type ApplyPatchOptions, diffFiles } from "./files.ts";
export { DeltaError, type DeltaErrorCode } from "./errors.ts";
export { parseHeader, type PatchHeader } from "./format.ts";
