/**
 * Point values to and from registers and bits.
 *
 * Each register is 16 bits, big-endian on the wire (application protocol
 * 4.2). Values wider than one register span consecutive registers; the
 * specification leaves their order open, so each point says it:
 * `word_order = "big"` puts the most significant register first (the common
 * "ABCD" layout), `"little"` the least significant first ("CDAB"; for 64-bit
 * values all four registers reversed).
 *
 * @module
 */
import { MODBUS_TYPE_REGISTERS } from "../../runtime/mod.ts";

/** The value types a point may have. */
export type PointType = keyof typeof MODBUS_TYPE_REGISTERS;

/** Registers each type spans (bits count 1). */
export const REGISTERS: Readonly<Record<PointType, number>> = MODBUS_TYPE_REGISTERS;

/** How a point's raw value becomes a reading. */
export interface Encoding {
  type: PointType;
  wordOrder: "big" | "little";
  /** value = raw * scale + offset */
  scale: number;
  offset: number;
}

const scratch = new DataView(new ArrayBuffer(8));

/** Puts `words` (one register each) into `scratch` in big-endian word order. */
function loadWords(words: ArrayLike<number>, at: number, n: number, order: "big" | "little") {
  for (let i = 0; i < n; i++) {
    const w = order === "big" ? words[at + i] : words[at + n - 1 - i];
    scratch.setUint16(2 * i, w);
  }
}

/**
 * The raw value of a point starting at `at` in `words` (registers, or bits
 * as 0/1 for coil and discrete tables), before scale and offset.
 */
export function decodeRaw(words: ArrayLike<number>, at: number, e: Encoding): number {
  switch (e.type) {
    case "bool":
      return words[at] !== 0 ? 1 : 0;
    case "uint16":
      return words[at];
    case "int16":
      return (words[at] << 16) >> 16;
    case "int32":
      loadWords(words, at, 2, e.wordOrder);
      return scratch.getInt32(0);
    case "uint32":
      loadWords(words, at, 2, e.wordOrder);
      return scratch.getUint32(0);
    case "float32":
      loadWords(words, at, 2, e.wordOrder);
      return scratch.getFloat32(0);
    case "float64":
      loadWords(words, at, 4, e.wordOrder);
      return scratch.getFloat64(0);
  }
}

/**
 * The reading value of a point: raw × scale + offset, booleans as 1 and 0.
 *
 * @example
 * ```ts
 * decodeValue([0x4148, 0x0000], 0, { type: "float32", wordOrder: "big", scale: 1, offset: 0 }); // 12.5
 * ```
 */
export function decodeValue(words: ArrayLike<number>, at: number, e: Encoding): number {
  const raw = decodeRaw(words, at, e);
  return e.type === "bool" ? raw : raw * e.scale + e.offset;
}

/** A value that cannot be written to a point (wrong kind, out of range). */
export class EncodeError extends RangeError {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "EncodeError";
  }
}

const INT_RANGE: Partial<Record<PointType, [number, number]>> = {
  int16: [-0x8000, 0x7fff],
  uint16: [0, 0xffff],
  int32: [-0x80000000, 0x7fffffff],
  uint32: [0, 0xffffffff],
};

/**
 * The registers (or, for `bool`, one 0/1) that make a point read `value`:
 * the inverse of {@linkcode decodeValue}, `raw = (value - offset) / scale`,
 * rounded to the nearest integer for integer types. Throws
 * {@linkcode EncodeError} when the raw value does not fit the type.
 */
export function encodeValue(value: number | boolean, e: Encoding): number[] {
  if (e.type === "bool") {
    if (typeof value === "boolean") return [value ? 1 : 0];
    if (value === 0 || value === 1) return [value];
    throw new EncodeError(`a bool point takes true, false, 1 or 0, got ${value}`);
  }
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new EncodeError(`a ${e.type} point takes a finite number, got ${String(value)}`);
  }
  let raw = (value - e.offset) / e.scale;
  const range = INT_RANGE[e.type];
  if (range) {
    raw = Math.round(raw);
    if (raw < range[0] || raw > range[1]) {
      throw new EncodeError(
        `${value} is raw ${raw}, outside ${e.type} (${range[0]} to ${range[1]})`,
      );
    }
  }
  const n = REGISTERS[e.type];
  switch (e.type) {
    case "int16":
    case "uint16":
      return [raw & 0xffff];
    case "int32":
      scratch.setInt32(0, raw);
      break;
    case "uint32":
      scratch.setUint32(0, raw);
      break;
    case "float32":
      if (Math.abs(raw) > 3.4028234663852886e38) {
        throw new EncodeError(`${value} is raw ${raw}, outside float32`);
      }
      scratch.setFloat32(0, raw);
      break;
    case "float64":
      scratch.setFloat64(0, raw);
      break;
  }
  const words = Array.from({ length: n }, (_, i) => scratch.getUint16(2 * i));
  return e.wordOrder === "big" ? words : words.reverse();
}
