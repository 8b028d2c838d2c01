/**
 * Streaming, hardened bspatch: applies a BSDIFF40 patch (see format.ts) to an
 * old file held in memory and writes the new file to a sink in 1 MiB pieces,
 * so memory stays at old + patch bookkeeping, never old + new + whole blocks.
 */
import { createHash } from "node:crypto";
import { Bz2Reader } from "./bz2/bz2.ts";
import { DeltaError } from "./errors.ts";
import { offtin } from "./format.ts";
import { openPatch, type PatchInput } from "./_patch_source.ts";
import { readWhole } from "./_read.ts";

export type { PatchInput } from "./_patch_source.ts";

const CHUNK = 1 << 20;

/** Options for {@linkcode bspatch}. */
export interface BspatchOptions {
  /**
   * Largest new file the header may announce, in bytes.
   * @default {4294967296} (4 GiB)
   */
  maxNewSize?: number;
  /** Called after each piece is written with bytes written so far and the total. */
  onProgress?: (written: number, total: number) => void;
  /** Stops the patch between pieces. */
  signal?: AbortSignal;
}

/** What {@linkcode bspatch} produced. */
export interface BspatchResult {
  /** Bytes written to the sink. */
  size: number;
  /** Lower-case hex SHA-256 of those bytes. */
  sha256: string;
}

/**
 * Applies a BSDIFF40 patch, interchangeable with Debian's `bspatch` 4.3, and
 * writes the result to `sink`, closing it on success and aborting it on error.
 *
 * Beyond `bspatch` it refuses: negative lengths (CVE-2014-9862), lengths
 * or seeks that would leave the new or old file (CVE-2020-14315 and the
 * out-of-bounds read before the old file), more control triples than the new
 * size allows, and any data left in a block once the new file is complete.
 * Each bzip2 block is decoded only as far as the control block asks (then
 * checked to end there), so a decompression bomb costs nothing.
 *
 * Pieces reach `sink` before the whole patch is verified (bzip2 CRCs cover
 * whole blocks): when the result must be all or nothing, use `applyPatch`.
 *
 * @example
 * ```ts
 * import { bspatch } from "./bspatch.ts";
 * const parts: Uint8Array[] = [];
 * const sink = new WritableStream<Uint8Array>({ write: (c) => void parts.push(c) });
 * const { sha256 } = await bspatch("old.bin", "update.bsdiff", sink);
 * ```
 * @throws {DeltaError} naming the broken rule in `code`.
 */
export async function bspatch(
  old: Uint8Array | string | URL,
  patch: PatchInput,
  sink: WritableStream<Uint8Array>,
  options: BspatchOptions = {},
): Promise<BspatchResult> {
  const writer = sink.getWriter();
  try {
    const oldBytes = old instanceof Uint8Array ? old : await readWhole(old);
    // The sink may keep chunks, so each gets its own copy.
    const result = await patchInto(oldBytes, patch, (c) => writer.write(c.slice()), options);
    await writer.close();
    return result;
  } catch (e) {
    await writer.abort(e).catch(() => {});
    throw e;
  } finally {
    writer.releaseLock();
  }
}

/**
 * The patch loop behind {@linkcode bspatch}: `write` gets each piece of the new
 * file in order, and the piece is reused once the returned promise settles,
 * so a caller that writes straight to a file allocates nothing per piece.
 */
export async function patchInto(
  old: Uint8Array,
  patch: PatchInput,
  write: (piece: Uint8Array) => Promise<void>,
  options: BspatchOptions = {},
): Promise<BspatchResult> {
  const { maxNewSize = 2 ** 32, onProgress, signal } = options;
  if (!Number.isSafeInteger(maxNewSize) || maxNewSize < 0) {
    throw new RangeError(`maxNewSize must be a non-negative safe integer, got ${maxNewSize}`);
  }
  return await apply(old, patch, write, maxNewSize, onProgress, signal);
}

async function apply(
  old: Uint8Array,
  patch: PatchInput,
  write: (piece: Uint8Array) => Promise<void>,
  maxNewSize: number,
  onProgress: BspatchOptions["onProgress"],
  signal: AbortSignal | undefined,
): Promise<BspatchResult> {
  const opened = await openPatch(patch, maxNewSize);
  const { newSize } = opened.header;
  const ctrl = new Bz2Reader(opened.ctrl, "control");
  const diff = new Bz2Reader(opened.diff, "diff");
  const extra = new Bz2Reader(opened.extra, "extra");
  const hash = createHash("sha256");
  try {
    const oldSize = old.length;
    const triple = new Uint8Array(24);
    // bsdiff emits at most one triple per new byte plus a final one.
    const maxTriples = newSize + 1;
    let triples = 0;
    let oldPos = 0;
    let newPos = 0;
    const buf = new Uint8Array(Math.min(CHUNK, Math.max(newSize, 1)));
    let fill = 0;
    const flush = async () => {
      if (fill === 0) return;
      const piece = buf.subarray(0, fill);
      hash.update(piece);
      await write(piece);
      fill = 0;
      onProgress?.(newPos, newSize);
      signal?.throwIfAborted();
    };

    while (newPos < newSize) {
      if (++triples > maxTriples) {
        throw new DeltaError(
          "too-many-controls",
          `control block holds more than ${maxTriples} triples for a ${newSize}-byte new file ` +
            `(stopped at new offset ${newPos})`,
        );
      }
      const got = ctrl.fill(triple);
      if (got < 24) await ctrl.readFull(triple, got);
      const addLen = offtin(triple, 0);
      const copyLen = offtin(triple, 8);
      const seek = offtin(triple, 16);
      if (addLen < 0 || copyLen < 0) {
        throw new DeltaError(
          "negative-length",
          `control triple ${triples}: lengths must be >= 0, got add ${addLen} and copy ${copyLen}`,
        );
      }
      if (addLen > newSize - newPos || copyLen > newSize - newPos - addLen) {
        throw new DeltaError(
          "new-overflow",
          `control triple ${triples}: add ${addLen} + copy ${copyLen} bytes at new offset ` +
            `${newPos} runs past the new file size ${newSize}`,
        );
      }
      if (addLen > oldSize - oldPos) {
        throw new DeltaError(
          "seek-out-of-range",
          `control triple ${triples}: adds ${addLen} old bytes from old offset ${oldPos}, ` +
            `past the old file size ${oldSize}`,
        );
      }

      // Diff run: new = diff + old, byte-wise modulo 256.
      let left = addLen;
      while (left > 0) {
        const n = Math.min(left, buf.length - fill);
        const piece = buf.subarray(fill, fill + n);
        const got = diff.fill(piece);
        if (got < n) await diff.readFull(piece, got);
        for (let i = 0; i < n; i++) piece[i] += old[oldPos + i];
        oldPos += n;
        newPos += n;
        fill += n;
        left -= n;
        if (fill === buf.length) await flush();
      }

      // Extra run: bytes copied as they are.
      left = copyLen;
      while (left > 0) {
        const n = Math.min(left, buf.length - fill);
        const piece = buf.subarray(fill, fill + n);
        const got = extra.fill(piece);
        if (got < n) await extra.readFull(piece, got);
        newPos += n;
        fill += n;
        left -= n;
        if (fill === buf.length) await flush();
      }

      const target = oldPos + seek;
      if (target < 0 || target > oldSize) {
        throw new DeltaError(
          "seek-out-of-range",
          `control triple ${triples}: seek ${seek} from old offset ${oldPos} lands at ${target}, ` +
            `outside the old file (0..${oldSize})`,
        );
      }
      oldPos = target;
    }
    await flush();
    // A genuine patch uses every byte of every block; checking the ends also
    // verifies the CRCs of the last bzip2 blocks.
    await ctrl.expectEnd();
    await diff.expectEnd();
    await extra.expectEnd();
    return { size: newPos, sha256: hash.digest("hex") };
  } finally {
    ctrl.close();
    diff.close();
    extra.close();
    opened.close();
  }
}
