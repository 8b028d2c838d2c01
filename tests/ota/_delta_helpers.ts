/**
 * Test helpers for ota/delta: deterministic test data, hand-made BSDIFF40
 * patches (for attacks), and the Debian bsdiff/bspatch reference tools.
 *
 * @module
 */
import { bz2Compress } from "../../ota/delta/bz2/bz2.ts";
import { concatBytes } from "../../lib/mod.ts";

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
export function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * A "new version" of `old`: scattered byte edits, an insertion, a deletion and
 * a moved block, the kinds of change a rebuilt binary shows.
 */
export function mutate(old: Uint8Array, seed: number): Uint8Array {
  const noise = randomBytes(old.length + 4096, seed);
  const out: number[] = [];
  const third = Math.floor(old.length / 3);
  for (let i = 0; i < old.length; i++) {
    if (i === third) { for (let k = 0; k < 1000; k++) out.push(noise[k]); }
    if (i >= 2 * third && i < 2 * third + 500) continue;
    out.push(noise[i + 1000] < 3 ? noise[i + 2000] : old[i]);
  }
  return new Uint8Array(out.concat(Array.from(old.subarray(0, Math.min(2000, old.length)))));
}

/** Encodes a number as BSDIFF40 does (sign-magnitude, little-endian); exact to 2^53. */
export function offt(x: number | bigint): Uint8Array {
  const buf = new Uint8Array(8);
  let y = BigInt(x);
  const neg = y < 0n;
  if (neg) y = -y;
  for (let i = 0; i < 8; i++) {
    buf[i] = Number(y & 0xffn);
    y >>= 8n;
  }
  if (neg) buf[7] |= 0x80;
  return buf;
}

/** Parts of a hand-made patch; streams are bzip2'd unless given as raw bytes. */
export interface CraftedPatch {
  triples: Array<[number | bigint, number | bigint, number | bigint]>;
  diff?: Uint8Array;
  extra?: Uint8Array;
  newSize: number | bigint;
  /** Already-compressed control block, instead of `triples`. */
  rawCtrl?: Uint8Array;
  rawDiff?: Uint8Array;
  rawExtra?: Uint8Array;
  /** Header lengths to claim instead of the true ones. */
  ctrlLength?: number | bigint;
  diffLength?: number | bigint;
}

/** Builds a BSDIFF40 patch from its parts (format.ts documents the layout). */
export function craftPatch(p: CraftedPatch): Uint8Array {
  const ctrl = p.rawCtrl ??
    bz2Compress(concatBytes(p.triples.flatMap(([x, y, z]) => [offt(x), offt(y), offt(z)])));
  const diff = p.rawDiff ?? bz2Compress(p.diff ?? new Uint8Array(0));
  const extra = p.rawExtra ?? bz2Compress(p.extra ?? new Uint8Array(0));
  return concatBytes([
    new TextEncoder().encode("BSDIFF40"),
    offt(p.ctrlLength ?? ctrl.length),
    offt(p.diffLength ?? diff.length),
    offt(p.newSize),
    ctrl,
    diff,
    extra,
  ]);
}

/** Runs a command; resolves with its exit code and stderr text. */
export async function run(cmd: string, args: string[]): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}
