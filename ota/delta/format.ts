/**
 * The BSDIFF40 patch layout (Colin Percival's bsdiff 4.x, as shipped by Debian):
 *
 *   offset  length  field
 *   0       8       magic "BSDIFF40"
 *   8       8       X = length of the bzip2'd control block
 *   16      8       Y = length of the bzip2'd diff block
 *   24      8       length of the new file
 *   32      X       bzip2(control block): triples (x, y, z) of 8-byte numbers,
 *                   "add x bytes of old to x diff bytes; copy y extra bytes;
 *                   seek old by z"
 *   32+X    Y       bzip2(diff block)
 *   32+X+Y  rest    bzip2(extra block)
 *
 * Every number is 8 bytes, little-endian magnitude in 63 bits with the sign
 * in the top bit of the last byte (bsdiff.c `offtout`, bspatch.c `offtin`).
 */
import { DeltaError } from "./errors.ts";

/** The 8 magic bytes that open a BSDIFF40 patch. */
export const MAGIC = new TextEncoder().encode("BSDIFF40");
/** Bytes in the fixed header. */
export const HEADER_SIZE = 32;

/** Reads one sign-magnitude number (bspatch.c `offtin`); exact up to 2^53. */
export function offtin(buf: Uint8Array, at: number): number {
  const lo = (buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16) | (buf[at + 3] << 24)) >>> 0;
  const hi =
    (buf[at + 4] | (buf[at + 5] << 8) | (buf[at + 6] << 16) | ((buf[at + 7] & 0x7f) << 24)) >>>
    0;
  const y = hi * 0x1_0000_0000 + lo;
  return buf[at + 7] & 0x80 ? -y : y;
}

/** Writes one sign-magnitude number (bsdiff.c `offtout`); |x| must be below 2^53. */
export function offtout(x: number, buf: Uint8Array, at: number): void {
  let y = Math.abs(x);
  const lo = y % 0x1_0000_0000;
  y = (y - lo) / 0x1_0000_0000;
  buf[at] = lo & 0xff;
  buf[at + 1] = (lo >>> 8) & 0xff;
  buf[at + 2] = (lo >>> 16) & 0xff;
  buf[at + 3] = (lo >>> 24) & 0xff;
  buf[at + 4] = y & 0xff;
  buf[at + 5] = (y >>> 8) & 0xff;
  buf[at + 6] = (y >>> 16) & 0xff;
  buf[at + 7] = ((y >>> 24) & 0x7f) | (x < 0 ? 0x80 : 0);
}

/** The decoded fixed header. */
export interface PatchHeader {
  /** Bytes of the bzip2'd control block. */
  ctrlLength: number;
  /** Bytes of the bzip2'd diff block. */
  diffLength: number;
  /** Bytes of the file the patch produces. */
  newSize: number;
}

/**
 * The most a bzip2 stream of `n` input bytes can occupy: libbz2 documents
 * "1% larger than the uncompressed data, plus 600 bytes" for a whole buffer.
 */
export function bz2Bound(n: number): number {
  return n + Math.ceil(n / 100) + 600;
}

/**
 * Parses and validates the header. A size is accepted only if a genuine patch
 * could have it: the new size within `maxNewSize`, and the compressed blocks no
 * larger than bzip2 can make what they must decode to.
 */
export function parseHeader(buf: Uint8Array, maxNewSize: number): PatchHeader {
  if (buf.length < HEADER_SIZE) {
    throw new DeltaError(
      "truncated-header",
      `patch is ${buf.length} bytes, shorter than the ${HEADER_SIZE}-byte BSDIFF40 header`,
    );
  }
  for (let i = 0; i < MAGIC.length; i++) {
    if (buf[i] !== MAGIC[i]) {
      const seen = JSON.stringify(new TextDecoder("latin1").decode(buf.subarray(0, 8)));
      throw new DeltaError("bad-magic", `patch must start with "BSDIFF40", found ${seen}`);
    }
  }
  const ctrlLength = offtin(buf, 8);
  const diffLength = offtin(buf, 16);
  const newSize = offtin(buf, 24);
  for (
    const [name, v] of [["control block length", ctrlLength], ["diff block length", diffLength], [
      "new file size",
      newSize,
    ]] as const
  ) {
    if (v < 0) throw new DeltaError("negative-length", `header ${name} must be >= 0, got ${v}`);
  }
  if (newSize > maxNewSize) {
    throw new DeltaError(
      "size-limit",
      `header new file size ${newSize} exceeds the limit of ${maxNewSize} bytes`,
    );
  }
  // A control triple is 24 bytes and every triple but the last advances the
  // output, so the control block decodes to at most 24 * (newSize + 1) bytes.
  const ctrlMax = bz2Bound(24 * (newSize + 1));
  if (ctrlLength > ctrlMax) {
    throw new DeltaError(
      "bad-header",
      `header control block length ${ctrlLength} exceeds ${ctrlMax}, the most bzip2 needs ` +
        `for a ${newSize}-byte new file`,
    );
  }
  const diffMax = bz2Bound(newSize);
  if (diffLength > diffMax) {
    throw new DeltaError(
      "bad-header",
      `header diff block length ${diffLength} exceeds ${diffMax}, the most bzip2 needs ` +
        `for a ${newSize}-byte new file`,
    );
  }
  return { ctrlLength, diffLength, newSize };
}
