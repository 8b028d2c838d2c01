/**
 * A cursor over WebAssembly binary bytes (WebAssembly Core Specification 2.0,
 * section 5 "Binary Format"): LEB128 integers (5.2.2), names (5.2.4).
 *
 * @module
 */

/** Thrown when the bytes are not a well-formed WebAssembly binary. */
export class WasmFormatError extends Error {
  /** Byte offset at which the problem was found. */
  readonly offset: number;
  constructor(message: string, offset: number, options?: ErrorOptions) {
    super(`${message} (at byte ${offset})`, options);
    this.name = "WasmFormatError";
    this.offset = offset;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Reads the binary format sequentially; every read is bounds-checked. */
export class Reader {
  pos: number;
  readonly end: number;
  constructor(readonly bytes: Uint8Array, start = 0, end = bytes.length) {
    this.pos = start;
    this.end = end;
  }

  /** True when every byte up to `end` was consumed. */
  get done(): boolean {
    return this.pos >= this.end;
  }

  /** Fails when fewer than `n` bytes remain. */
  need(n: number): void {
    if (n < 0 || this.pos + n > this.end) {
      throw new WasmFormatError(
        `unexpected end: need ${n} bytes, ${this.end - this.pos} left`,
        this.pos,
      );
    }
  }

  byte(): number {
    if (this.pos >= this.end) this.need(1);
    return this.bytes[this.pos++];
  }

  take(n: number): Uint8Array {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }

  /** Unsigned LEB128 of at most 32 bits (5.2.2). */
  u32(): number {
    // Fast path: a one-byte LEB128, by far the most common.
    if (this.pos < this.end) {
      const first = this.bytes[this.pos];
      if (first < 0x80) {
        this.pos++;
        return first;
      }
    }
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 5; i++) {
      const b = this.byte();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) {
        if (result > 0xffffffff) throw new WasmFormatError("u32 out of range", this.pos - 1);
        return result;
      }
      shift += 7;
    }
    throw new WasmFormatError("u32 LEB128 longer than 5 bytes", this.pos);
  }

  /** Unsigned LEB128 of at most 64 bits, as a bigint (memory64 limits). */
  u64(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      const b = this.byte();
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
    throw new WasmFormatError("u64 LEB128 longer than 10 bytes", this.pos);
  }

  /** Skips a signed LEB128 of at most `maxBytes` bytes (s32: 5, s33: 5, s64: 10). */
  skipSleb(maxBytes: number): void {
    for (let i = 0; i < maxBytes; i++) {
      if ((this.byte() & 0x80) === 0) return;
    }
    throw new WasmFormatError(`signed LEB128 longer than ${maxBytes} bytes`, this.pos);
  }

  /** Signed LEB128 of at most 32 bits (used for block types and i32.const). */
  s32(): number {
    let result = 0;
    let shift = 0;
    let b: number;
    let i = 0;
    do {
      if (i++ >= 5) throw new WasmFormatError("s32 LEB128 longer than 5 bytes", this.pos);
      b = this.byte();
      result |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    if (shift < 32 && (b & 0x40)) result |= -1 << shift;
    return result;
  }

  /** A name: a u32 byte length then UTF-8 (5.2.4). */
  name(): string {
    const len = this.u32();
    const start = this.pos;
    const raw = this.take(len);
    try {
      return utf8.decode(raw);
    } catch (cause) {
      throw new WasmFormatError("name is not valid UTF-8", start, { cause });
    }
  }
}

/** Encodes an unsigned LEB128 (5.2.2). */
export function encodeU32(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
}

/** Encodes a name (5.2.4). */
export function encodeName(s: string): number[] {
  const bytes = new TextEncoder().encode(s);
  return [...encodeU32(bytes.length), ...bytes];
}
