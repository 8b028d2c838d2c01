/**
 * bsdiff: makes BSDIFF40 patches (see format.ts) with the matching algorithm of
 * Colin Percival's bsdiff 4.3 as Debian ships it (32-bit offsets), and the
 * same bzip2 encoder at block size 9, so patches are byte-identical to
 * Debian's `bsdiff`. The suffix array comes from SA-IS (sais.ts) instead of
 * qsufsort: a suffix array is unique, so the matches are the same.
 */
import { bz2Compress } from "./bz2/bz2.ts";
import { HEADER_SIZE, MAGIC, offtout } from "./format.ts";
import { suffixArray } from "./sais.ts";

/** Options for {@linkcode bsdiff}. */
export interface BsdiffOptions {
  /** Called now and then with the phase and how far it got (0..1). */
  onProgress?: (phase: "sort" | "match" | "compress", fraction: number) => void;
}

/** Largest input Debian's 32-bit bsdiff accepts. */
const MAX_SIZE = 0x7fffffff - 1;

/** Length of the common prefix of old[o..oEnd) and nw[n..nEnd). */
function matchlen(
  old: Uint8Array,
  o: number,
  oEnd: number,
  nw: Uint8Array,
  n: number,
  nEnd: number,
): number {
  const len = Math.min(oEnd - o, nEnd - n);
  let i = 0;
  while (i < len && old[o + i] === nw[n + i]) i++;
  return i;
}

/**
 * bsdiff.c `search`: binary search of the suffix array for the longest match
 * of nw[scan..]; returns the length and leaves the old offset in `found`.
 */
let found = 0;
function search(I: Int32Array, old: Uint8Array, nw: Uint8Array, scan: number): number {
  const oldSize = old.length;
  const newSize = nw.length;
  let st = 0;
  let en = oldSize;
  while (en - st >= 2) {
    const x = st + ((en - st) >>> 1);
    // memcmp(old + I[x], new, MIN(oldsize - I[x], newsize)) < 0
    const o = I[x];
    const len = Math.min(oldSize - o, newSize - scan);
    let i = 0;
    while (i < len && old[o + i] === nw[scan + i]) i++;
    if (i < len && old[o + i] < nw[scan + i]) st = x;
    else en = x;
  }
  const x = matchlen(old, I[st], oldSize, nw, scan, newSize);
  const y = matchlen(old, I[en], oldSize, nw, scan, newSize);
  if (x > y) {
    found = I[st];
    return x;
  }
  found = I[en];
  return y;
}

/**
 * Computes a BSDIFF40 patch that turns `old` into `new`, byte-identical to
 * what Debian's `bsdiff` 4.3 writes for the same files.
 *
 * Memory: the suffix array (4 bytes per old byte) plus two buffers of the new
 * size, as in C bsdiff.
 *
 * @example
 * ```ts
 * import { bsdiff } from "./bsdiff.ts";
 * const patch = await bsdiff(await Deno.readFile("v1.bin"), await Deno.readFile("v2.bin"));
 * await Deno.writeFile("v1-v2.bsdiff", patch);
 * ```
 * @throws {RangeError} if either input is 2 GiB or larger (the format's 32-bit offsets in Debian).
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
  const { onProgress } = options;
  for (const [name, b] of [["old", old], ["new", nw]] as const) {
    if (b.length > MAX_SIZE) {
      throw new RangeError(`bsdiff: ${name} input is ${b.length} bytes, the limit is ${MAX_SIZE}`);
    }
  }
  onProgress?.("sort", 0);
  const I = suffixArray(old);
  onProgress?.("sort", 1);

  const oldSize = old.length;
  const newSize = nw.length;
  const db = new Uint8Array(newSize + 1);
  const eb = new Uint8Array(newSize + 1);
  let dblen = 0;
  let eblen = 0;
  let ctrl = new Uint8Array(24 * 1024);
  let ctrlLen = 0;
  const pushCtrl = (x: number, y: number, z: number) => {
    if (ctrlLen + 24 > ctrl.length) {
      const grown = new Uint8Array(ctrl.length * 2);
      grown.set(ctrl);
      ctrl = grown;
    }
    offtout(x, ctrl, ctrlLen);
    offtout(y, ctrl, ctrlLen + 8);
    offtout(z, ctrl, ctrlLen + 16);
    ctrlLen += 24;
  };

  // bsdiff.c main loop, step for step.
  let scan = 0, len = 0, pos = 0;
  let lastscan = 0, lastpos = 0, lastoffset = 0;
  let nextReport = 1 << 20;
  while (scan < newSize) {
    let oldscore = 0;
    let scsc = scan += len;
    for (; scan < newSize; scan++) {
      len = search(I, old, nw, scan);
      pos = found;
      for (; scsc < scan + len; scsc++) {
        if (scsc + lastoffset < oldSize && old[scsc + lastoffset] === nw[scsc]) oldscore++;
      }
      if ((len === oldscore && len !== 0) || len > oldscore + 8) break;
      if (scan + lastoffset < oldSize && old[scan + lastoffset] === nw[scan]) oldscore--;
    }
    if (scan >= nextReport) {
      onProgress?.("match", scan / newSize);
      nextReport = scan + (1 << 20);
    }

    if (len !== oldscore || scan === newSize) {
      // Extend the previous match forward while more than half the bytes agree.
      let s = 0, Sf = 0, lenf = 0;
      for (let i = 0; lastscan + i < scan && lastpos + i < oldSize;) {
        if (old[lastpos + i] === nw[lastscan + i]) s++;
        i++;
        if (s * 2 - i > Sf * 2 - lenf) {
          Sf = s;
          lenf = i;
        }
      }
      // And this match backward.
      let lenb = 0;
      if (scan < newSize) {
        let Sb = 0;
        s = 0;
        for (let i = 1; scan >= lastscan + i && pos >= i; i++) {
          if (old[pos - i] === nw[scan - i]) s++;
          if (s * 2 - i > Sb * 2 - lenb) {
            Sb = s;
            lenb = i;
          }
        }
      }
      // Split an overlap where it scores best.
      if (lastscan + lenf > scan - lenb) {
        const overlap = lastscan + lenf - (scan - lenb);
        let Ss = 0, lens = 0;
        s = 0;
        for (let i = 0; i < overlap; i++) {
          if (nw[lastscan + lenf - overlap + i] === old[lastpos + lenf - overlap + i]) s++;
          if (nw[scan - lenb + i] === old[pos - lenb + i]) s--;
          if (s > Ss) {
            Ss = s;
            lens = i + 1;
          }
        }
        lenf += lens - overlap;
        lenb -= lens;
      }

      for (let i = 0; i < lenf; i++) db[dblen + i] = nw[lastscan + i] - old[lastpos + i];
      const extraLen = scan - lenb - (lastscan + lenf);
      eb.set(nw.subarray(lastscan + lenf, lastscan + lenf + extraLen), eblen);
      dblen += lenf;
      eblen += extraLen;

      pushCtrl(lenf, extraLen, pos - lenb - (lastpos + lenf));

      lastscan = scan - lenb;
      lastpos = pos - lenb;
      lastoffset = pos - scan;
    }
  }
  onProgress?.("match", 1);

  const zCtrl = bz2Compress(ctrl.subarray(0, ctrlLen), 9);
  onProgress?.("compress", 1 / 3);
  const zDiff = bz2Compress(db.subarray(0, dblen), 9);
  onProgress?.("compress", 2 / 3);
  const zExtra = bz2Compress(eb.subarray(0, eblen), 9);
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
