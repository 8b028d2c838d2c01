/**
 * OLPC canonical JSON, as securesystemslib's `encode_canonical` produces it:
 * the byte string TUF signatures are computed over (specification section 4,
 * "canonical JSON"). Objects have their keys sorted by code point, no
 * whitespace, strings escape only `"` and `\`, numbers are integers only.
 *
 * @module
 */
import { FormatError } from "./errors.ts";

const encoder = new TextEncoder();

/** Compares two strings by Unicode code point, as Python's `sorted` on `str` does. */
function compareCodePoints(a: string, b: string): number {
  const ai = a[Symbol.iterator]();
  const bi = b[Symbol.iterator]();
  while (true) {
    const x = ai.next();
    const y = bi.next();
    if (x.done || y.done) return x.done ? (y.done ? 0 : -1) : 1;
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

function encodeString(s: string): string {
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/**
 * Deepest nesting encoded. Real metadata nests a few levels; a file from an
 * untrusted mirror is canonicalised before its signatures are checked, and
 * a few kilobytes of `[[[[...` would otherwise overflow the stack with a
 * RangeError instead of failing as a FormatError.
 */
const MAX_DEPTH = 512;

function encodeValue(value: unknown, out: string[], depth = 0): void {
  if (depth > MAX_DEPTH) {
    throw new FormatError(`canonical JSON nests deeper than ${MAX_DEPTH} levels`);
  }
  if (value === null) out.push("null");
  else if (value === true) out.push("true");
  else if (value === false) out.push("false");
  else if (typeof value === "string") out.push(encodeString(value));
  else if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) {
      throw new FormatError(`canonical JSON allows only integers, got ${value}`);
    }
    out.push(String(value));
  } else if (Array.isArray(value)) {
    out.push("[");
    value.forEach((v, i) => {
      if (i > 0) out.push(",");
      encodeValue(v, out, depth + 1);
    });
    out.push("]");
  } else if (typeof value === "object") {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort(compareCodePoints);
    out.push("{");
    keys.forEach((k, i) => {
      if (i > 0) out.push(",");
      out.push(encodeString(k), ":");
      encodeValue(obj[k], out, depth + 1);
    });
    out.push("}");
  } else {
    throw new FormatError(`canonical JSON cannot encode a ${typeof value}`);
  }
}

/**
 * Encodes `value` as canonical JSON text.
 *
 * @example
 * ```ts
 * canonicalJson({ b: 1, a: "x" }); // '{"a":"x","b":1}'
 * ```
 */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  encodeValue(value, out);
  return out.join("");
}

/** Canonical JSON of `value` as UTF-8 bytes: the input of every TUF signature. */
export function canonicalBytes(value: unknown): Uint8Array {
  return encoder.encode(canonicalJson(value));
}
