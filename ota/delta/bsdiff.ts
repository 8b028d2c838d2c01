/**
 * bsdiff: makes BSDIFF40 patches (see format.ts) with the matching algorithm of
 * Colin Percival's bsdiff 4.3 as Debian ships it (32-bit offsets), and the
 * same bzip2 encoder at block size 9, so patches are byte-identical to
 * Debian's `bsdiff`. The suffix array comes from SA-IS instead of qsufsort: a
 * suffix array is unique, so the matches are the same. The two hot loops run
 * in wasm (diffcore/diffcore.c) because they compare long byte ranges.
 */
import { bz2Compress } from "./bz2/bz2.ts";
import { Diffcore } from "./diffcore/diffcore.ts";
import { HEADER_SIZE, MAGIC, offtout } from "./format.ts";

/** Options for {@linkcode bsdiff}. */
export interface BsdiffOptions {
  /** Called now and then with the phase and how far it got (0..1). */
  onProgress?: (phase: "sort" | "match" | "compress", fraction: number) => void;
}

/** Largest input Debian's 32-bit bsdiff accepts. */
const MAX_SIZE = 0x7fffffff - 1;
/** Control triples drained from wasm per call. */
const CTRL_BATCH = 1 << 16;

/**
 * Computes a BSDIFF40 patch that turns `old` into `new`, byte-identical to
 * what Debian's `bsdiff` 4.3 writes for the same files.
 *
 * Memory: old + new + the suffix array (4 bytes per old byte) + two buffers of
 * the new size, all in one wasm instance freed afterwards; so old + new must
 * stay below about 700 MB (wasm32's 4 GiB).
 *
 * @example
 * ```ts
 * import { bsdiff } from "./bsdiff.ts";
 * const patch = await bsdiff(await Deno.readFile("v1.bin"), await Deno.readFile("v2.bin"));
 * await Deno.writeFile("v1-v2.bsdiff", patch);
 * ```
 * @throws {RangeError} if an input is 2 GiB or larger (Debian's 32-bit offsets)
 * or the working set does not fit in wasm memory.
 */
export function bsdiff(
  old: Uint8Array,
  nw: Uint8Array,
  options: BsdiffOptions = {},
): Promise<Uint8Array> {
  return Promise.resolve(bsdiffSync(old, nw, options));
}

/** Synchronous {@linkcode bsdiff}. */
export function bsdiffSync(
  old: Uint8Array,
  nw: Uint8Array,
  options: BsdiffOptions = {},
): Uint8Array {
  checkSize("old", old.length);
  checkSize("new", nw.length);
  const core = new Diffcore();
  const oldPtr = core.put(old);
  const I = sortOld(core, oldPtr, old.length, options);
  // The new file enters wasm memory only after sorting, which needs the most.
  const newPtr = core.put(nw);
  return matchAndEncode(core, I, oldPtr, old.length, newPtr, nw.length, options);
}

/**
 * {@linkcode bsdiff} over two files, read straight into wasm memory so the
 * inputs are held once, not twice.
 */
export async function bsdiffFiles(
  oldPath: string | URL,
  newPath: string | URL,
  options: BsdiffOptions = {},
): Promise<Uint8Array> {
  using oldFile = await Deno.open(oldPath, { read: true });
  using newFile = await Deno.open(newPath, { read: true });
  const oldSize = (await oldFile.stat()).size;
  const newSize = (await newFile.stat()).size;
  checkSize("old", oldSize);
  checkSize("new", newSize);
  const core = new Diffcore();
  const oldPtr = core.alloc(oldSize);
  await readInto(core, oldFile, oldPtr, oldSize, oldPath);
  const I = sortOld(core, oldPtr, oldSize, options);
  // The new file enters wasm memory only after sorting, which needs the most.
  const newPtr = core.alloc(newSize);
  await readInto(core, newFile, newPtr, newSize, newPath);
  return matchAndEncode(core, I, oldPtr, oldSize, newPtr, newSize, options);
}

async function readInto(
  core: Diffcore,
  file: Deno.FsFile,
  ptr: number,
  size: number,
  name: string | URL,
): Promise<void> {
  let off = 0;
  while (off < size) {
    // A fresh view each time: wasm memory does not grow during reads.
    const n = await file.read(core.bytes(ptr + off, size - off));
    if (n === null) throw new Error(`bsdiff: ${name} shrank while being read`);
    off += n;
  }
}

function checkSize(name: string, size: number): void {
  if (size > MAX_SIZE) {
    throw new RangeError(`bsdiff: ${name} input is ${size} bytes, the limit is ${MAX_SIZE}`);
  }
}

/** Builds the suffix array of the old file in wasm memory; returns its address. */
function sortOld(
  core: Diffcore,
  oldPtr: number,
  oldSize: number,
  { onProgress }: BsdiffOptions,
): number {
  onProgress?.("sort", 0);
  const I = core.alloc(4 * (oldSize + 1));
  if (core.exports.dc_suffix_array(oldPtr, oldSize, I) !== 0) {
    throw new RangeError(`bsdiff: out of wasm memory sorting a ${oldSize}-byte old file`);
  }
  onProgress?.("sort", 1);
  return I;
}

/** bsdiff's matching loop, then the three bzip2 blocks and the header. */
function matchAndEncode(
  core: Diffcore,
  I: number,
  oldPtr: number,
  oldSize: number,
  newPtr: number,
  newSize: number,
  { onProgress }: BsdiffOptions,
): Uint8Array {
  const x = core.exports;

  const db = core.alloc(newSize + 1);
  const eb = core.alloc(newSize + 1);
  const ctrlPtr = core.alloc(12 * CTRL_BATCH);
  const state = x.dc_diff_new(I, oldPtr, oldSize, newPtr, newSize, db, eb, ctrlPtr, CTRL_BATCH);
  if (state === 0) throw new RangeError("bsdiff: out of wasm memory");

  // Control triples, 24 bytes each in the patch (format.ts).
  let ctrl = new Uint8Array(24 * 1024);
  let ctrlLen = 0;
  for (;;) {
    const count = x.dc_diff_run(state);
    if (ctrlLen + 24 * count > ctrl.length) {
      const grown = new Uint8Array(Math.max(ctrl.length * 2, ctrlLen + 24 * count));
      grown.set(ctrl.subarray(0, ctrlLen));
      ctrl = grown;
    }
    const triples = core.ints(ctrlPtr, 3 * count);
    for (let i = 0; i < 3 * count; i++) {
      offtout(triples[i], ctrl, ctrlLen);
      ctrlLen += 8;
    }
    const scan = x.dc_diff_scan(state);
    onProgress?.("match", newSize === 0 ? 1 : scan / newSize);
    if (count < CTRL_BATCH) break;
  }
  const dbLen = x.dc_diff_dblen(state);
  const ebLen = x.dc_diff_eblen(state);

  const zCtrl = bz2Compress(ctrl.subarray(0, ctrlLen), 9);
  onProgress?.("compress", 1 / 3);
  const zDiff = bz2Compress(core.bytes(db, dbLen), 9);
  onProgress?.("compress", 2 / 3);
  const zExtra = bz2Compress(core.bytes(eb, ebLen), 9);
  onProgress?.("compress", 1);

  const out = new Uint8Array(HEADER_SIZE + zCtrl.length + zDiff.length + zExtra.length);
  out.set(MAGIC, 0);
  offtout(zCtrl.length, out, 8);
  offtout(zDiff.length, out, 16);
  offtout(newSize, out, 24);
  out.set(zCtrl, HEADER_SIZE);
  out.set(zDiff, HEADER_SIZE + zCtrl.length);
  out.set(zExtra, HEADER_SIZE + zCtrl.length + zDiff.length);
  return out;
}
