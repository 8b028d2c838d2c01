/**
 * Byte-level mutators (in the spirit of AFL's havoc stage): bit flips, byte
 * insert/delete/overwrite, block duplication, splicing with another seed,
 * interesting integers, and length-field lies (a 1/2/4/8-byte number
 * somewhere replaced by a boundary value).
 *
 * @module
 */
import { concatBytes } from "../../lib/mod.ts";
import type { Rng } from "./_prng.ts";

/** Integers that sit on boundaries parsers get wrong (AFL's list, widened to 64 bits). */
export const INTERESTING: readonly number[] = [
  0,
  1,
  -1,
  16,
  32,
  64,
  100,
  127,
  128,
  255,
  256,
  512,
  1000,
  1024,
  4096,
  32767,
  32768,
  65535,
  65536,
  100663045,
  2147483647,
  2147483648,
  4294967295,
  4294967296,
  2 ** 53 - 1,
  2 ** 53,
  -(2 ** 31),
  -(2 ** 53),
  1e21,
];

/** Largest input a mutator may produce, so inputs stay cheap to run. */
export const MAX_INPUT = 1 << 20;

function writeUint(buf: Uint8Array, at: number, width: number, v: bigint, le: boolean) {
  for (let i = 0; i < width; i++) {
    const byte = Number((v >> BigInt(8 * i)) & 0xffn);
    buf[le ? at + i : at + width - 1 - i] = byte;
  }
}

type Mutator = (rng: Rng, b: Uint8Array, seeds: readonly Uint8Array[]) => Uint8Array;

const MUTATORS: Mutator[] = [
  // Flip one bit.
  (rng, b) => {
    if (b.length === 0) return b;
    const out = b.slice();
    out[rng.below(b.length)] ^= 1 << rng.below(8);
    return out;
  },
  // Overwrite one byte with a random or interesting value.
  (rng, b) => {
    if (b.length === 0) return b;
    const out = b.slice();
    out[rng.below(b.length)] = rng.chance(0.5)
      ? rng.next() & 0xff
      : rng.pick([0, 0x7f, 0x80, 0xff]);
    return out;
  },
  // Insert random bytes.
  (rng, b) => {
    const at = rng.below(b.length + 1);
    const ins = rng.bytes(rng.int(1, rng.chance(0.9) ? 8 : 512));
    return concat(b.subarray(0, at), ins, b.subarray(at));
  },
  // Delete a range.
  (rng, b) => {
    if (b.length === 0) return b;
    const at = rng.below(b.length);
    const n = rng.int(1, Math.min(b.length - at, rng.chance(0.8) ? 8 : 4096));
    return concat(b.subarray(0, at), b.subarray(at + n));
  },
  // Duplicate a block in place.
  (rng, b) => {
    if (b.length === 0) return b;
    const at = rng.below(b.length);
    const n = rng.int(1, Math.min(b.length - at, 256));
    const times = rng.int(1, rng.chance(0.9) ? 4 : 64);
    const blk = b.subarray(at, at + n);
    return concat(b.subarray(0, at), ...Array(times).fill(blk), b.subarray(at));
  },
  // Length-field lie: an interesting integer as a 1/2/4/8-byte LE or BE number.
  (rng, b) => {
    const width = rng.pick([1, 2, 4, 8]);
    if (b.length < width) return b;
    const out = b.slice();
    const v = BigInt.asUintN(64, BigInt(Math.trunc(rng.pick(INTERESTING))));
    writeUint(out, rng.below(b.length - width + 1), width, v, rng.chance(0.7));
    return out;
  },
  // Arithmetic on one byte.
  (rng, b) => {
    if (b.length === 0) return b;
    const out = b.slice();
    out[rng.below(b.length)] += rng.int(-35, 35);
    return out;
  },
  // Splice: head of this input with the tail of another seed.
  (rng, b, seeds) => {
    const other = rng.pick(seeds);
    const cut = rng.below(b.length + 1);
    const from = rng.below(other.length + 1);
    return concat(b.subarray(0, cut), other.subarray(from));
  },
  // Truncate.
  (rng, b) => b.subarray(0, rng.below(b.length + 1)),
  // Copy a block of the input over another place.
  (rng, b) => {
    if (b.length < 2) return b;
    const out = b.slice();
    const n = rng.int(1, Math.min(64, b.length - 1));
    const from = rng.below(b.length - n + 1);
    const to = rng.below(b.length - n + 1);
    out.copyWithin(to, from, from + n);
    return out;
  },
];

/** Applies a random stack of 1 to 2^k mutations (AFL "havoc") to a copy of `input`. */
export function havoc(rng: Rng, input: Uint8Array, seeds: readonly Uint8Array[]): Uint8Array {
  let b = input;
  const n = 1 << rng.below(4);
  for (let i = 0; i < n; i++) {
    b = rng.pick(MUTATORS)(rng, b, seeds);
    if (b.length > MAX_INPUT) b = b.subarray(0, MAX_INPUT);
  }
  return b;
}

/** Concatenates byte arrays (lib's concatBytes, with the parts as arguments). */
export function concat(...parts: Uint8Array[]): Uint8Array {
  return concatBytes(parts);
}

/** JSON values that break naive validators: wrong types, boundaries, deep nesting. */
export function weirdValue(rng: Rng, depth = 0): unknown {
  switch (rng.below(depth > 3 ? 14 : 17)) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.pick(INTERESTING);
    case 3:
      return rng.pick([0.5, -0.0, 1e308, -1e308, 5e-324, Number.MAX_SAFE_INTEGER + 2]);
    case 4:
      return "";
    case 5:
      return rng.pick(["a", "0", "-1", "1e999", "NaN", "Infinity", "null", "true", "__proto__"]);
    case 6:
      return "x".repeat(rng.pick([127, 128, 129, 255, 256, 1024, 65536]));
    case 7:
      return rng.pick(["\u0000", "\ud800", "\uffff", "é", "a/b", "+", "#", "a b", "../..", "\n"]);
    case 8:
      return rng.pick([
        "1970-01-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "9999-12-31T23:59:60Z",
        "2020-01-01T00:00:00+99:99",
        "2030-01-01T00:00:00.123456789Z",
        "0000-01-01T00:00:00Z",
        "2020-13-01T00:00:00Z",
      ]);
    case 9:
      return [];
    case 10:
      return {};
    case 11:
      return rng.pick(["1.0.0", "0.0.0-rc.1", "v1", "1.2", "99999999999999999999.0.0"]);
    case 12:
      return "0".repeat(64);
    case 13:
      return rng.bytes(rng.int(0, 16)).reduce((s, x) => s + String.fromCharCode(x), "");
    case 14:
      return Array.from({ length: rng.int(1, 4) }, () => weirdValue(rng, depth + 1));
    case 15: {
      const o: Record<string, unknown> = {};
      for (let i = rng.int(1, 3); i > 0; i--) {
        const k = rng.pick(["a", "keyid", "version", "__proto__", "constructor", ""]);
        setOwn(o, k, weirdValue(rng, depth + 1));
      }
      return o;
    }
    default: {
      // Deep nesting: validators that recurse can overflow the stack.
      let v: unknown = 0;
      for (let i = rng.pick([64, 256, 1000]); i > 0; i--) v = rng.chance(0.5) ? [v] : { a: v };
      return v;
    }
  }
}

/**
 * Structure-aware JSON mutation: walks to a random place in `value` and
 * replaces, deletes or adds a field, or swaps a value for a weird one.
 * Returns a new value; `value` is left as it was.
 */
export function mutateJson(rng: Rng, value: unknown): unknown {
  const root = cloneShallowDeep(value, 0);
  const n = rng.int(1, 3);
  let out: unknown = root;
  for (let i = 0; i < n; i++) out = mutateOnce(rng, out);
  return out;
}

function mutateOnce(rng: Rng, root: unknown): unknown {
  // Collect containers and pick one to change.
  const spots: { parent: Record<string, unknown> | unknown[]; key: string | number }[] = [];
  const walk = (v: unknown, depth: number) => {
    if (depth > 8 || v === null || typeof v !== "object") return;
    if (Array.isArray(v)) {
      v.forEach((x, i) => {
        spots.push({ parent: v, key: i });
        walk(x, depth + 1);
      });
    } else {
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
        spots.push({ parent: v as Record<string, unknown>, key: k });
        walk(x, depth + 1);
      }
    }
  };
  walk(root, 0);
  // Never clone or descend into the deep values weirdValue makes: the point
  // is to hand them to the parser, not to overflow the fuzzer's own stack.
  if (spots.length === 0 || rng.chance(0.03)) return weirdValue(rng);
  const { parent, key } = rng.pick(spots);
  const p = parent as Record<string | number, unknown>;
  switch (rng.below(6)) {
    case 0:
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete p[key];
      break;
    case 1:
      if (Array.isArray(parent)) parent.push(parent[key as number]);
      else {setOwn(
          p,
          rng.pick(["extra", "x-unknown", String(key) + "_", "__proto__"]),
          weirdValue(rng),
        );}
      break;
    case 2: {
      const v = p[key];
      if (typeof v === "number") p[key] = rng.pick([-v, v + 1, v - 1, v * 1e6, 0, NaN, v + 0.5]);
      else if (typeof v === "string") p[key] = rng.chance(0.5) ? v + v : v.slice(0, -1);
      else p[key] = weirdValue(rng);
      break;
    }
    default:
      p[key] = weirdValue(rng);
  }
  return root;
}

/** Sets an own property, even `__proto__` (as JSON.parse does), and returns the object. */
export function setOwn(
  o: Record<string, unknown>,
  key: string,
  v: unknown,
): Record<string, unknown> {
  Object.defineProperty(o, key, { value: v, enumerable: true, writable: true, configurable: true });
  return o;
}

/** Copies containers down to depth 8 and shares anything deeper (deep values stay as they are). */
function cloneShallowDeep(v: unknown, depth: number): unknown {
  if (v === null || typeof v !== "object" || depth > 8) return v;
  if (Array.isArray(v)) return v.map((x) => cloneShallowDeep(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    setOwn(out, k, cloneShallowDeep(x, depth + 1));
  }
  return out;
}
