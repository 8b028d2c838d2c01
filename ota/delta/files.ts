/**
 * File-level delta operations that never leave a half-written result: output
 * goes to a temporary file beside the target, is fsynced, then renamed over it.
 */
import { basename, dirname, join } from "node:path";
import { bsdiffFiles, type BsdiffOptions } from "./bsdiff.ts";
import { type BspatchOptions, type BspatchResult, patchInto } from "./bspatch.ts";
import { DeltaError } from "./errors.ts";
import { readWhole } from "./_read.ts";

/** Options for {@linkcode applyPatch}. */
export interface ApplyPatchOptions extends BspatchOptions {
  /**
   * Permission bits of the new file.
   * @default the old file's permission bits
   */
  mode?: number;
  /** Lower-case hex SHA-256 the new file must have; checked before the rename. */
  expectedSha256?: string;
}

function tempPathFor(target: string): string {
  const rand = crypto.getRandomValues(new Uint32Array(2)).join("");
  return join(dirname(target), `.${basename(target)}.${rand}.tmp`);
}

async function syncDir(path: string): Promise<void> {
  try {
    using dir = await Deno.open(dirname(path), { read: true });
    await dir.sync();
  } catch {
    // Not every platform lets a directory be opened for fsync; the rename is
    // still atomic, only its durability across power loss is weaker.
  }
}

/** Writes via a temp file: `produce` fills it, then fsync and rename onto `target`. */
async function writeAtomically<T>(
  target: string,
  mode: number | undefined,
  produce: (write: (chunk: Uint8Array) => Promise<void>) => Promise<T>,
): Promise<T> {
  const tmp = tempPathFor(target);
  const file = await Deno.open(tmp, { write: true, createNew: true, mode: mode ?? 0o644 });
  let closed = false;
  try {
    const result = await produce(async (chunk) => {
      let off = 0;
      while (off < chunk.length) off += await file.write(chunk.subarray(off));
    });
    await file.sync();
    file.close();
    closed = true;
    if (mode !== undefined) await Deno.chmod(tmp, mode);
    await Deno.rename(tmp, target);
    await syncDir(target);
    return result;
  } catch (e) {
    if (!closed) file.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Applies the BSDIFF40 patch at `patchPath` to `oldPath` and writes `newPath`
 * atomically: on any error `newPath` is untouched and no temp file remains.
 *
 * @example
 * ```ts
 * import { applyPatch } from "./files.ts";
 * const { sha256 } = await applyPatch("edged-1.0", "1.0-1.1.bsdiff", "edged-1.1");
 * ```
 * @throws {DeltaError} if the patch is invalid (see `bspatch`).
 */
export async function applyPatch(
  oldPath: string,
  patchPath: string,
  newPath: string,
  options: ApplyPatchOptions = {},
): Promise<BspatchResult> {
  const old = await readWhole(oldPath);
  const mode = options.mode ?? ((await Deno.stat(oldPath)).mode ?? 0o644) & 0o7777;
  return await writeAtomically(newPath, mode, async (write) => {
    const result = await patchInto(old, patchPath, write, options);
    const want = options.expectedSha256?.toLowerCase();
    if (want !== undefined && result.sha256 !== want) {
      throw new DeltaError(
        "digest-mismatch",
        `patched file has SHA-256 ${result.sha256}, expected ${want}`,
      );
    }
    return result;
  });
}

/**
 * Writes the BSDIFF40 patch from `oldPath` to `newPath` into `patchPath`
 * atomically. Returns the patch size in bytes.
 *
 * @example
 * ```ts
 * import { diffFiles } from "./files.ts";
 * const size = await diffFiles("edged-1.0", "edged-1.1", "1.0-1.1.bsdiff");
 * ```
 */
export async function diffFiles(
  oldPath: string,
  newPath: string,
  patchPath: string,
  options: BsdiffOptions = {},
): Promise<number> {
  const patch = await bsdiffFiles(oldPath, newPath, options);
  await writeAtomically(patchPath, undefined, (write) => write(patch));
  return patch.length;
}
