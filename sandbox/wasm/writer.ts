/**
 * The rewriter's output buffer and the LEB128 encodings it writes in place
 * (WebAssembly Core Specification 2.0, 5.2.2): sizes reserved before their
 * content is known, and fixed-width slots patched afterwards.
 *
 * @module
 */

/** A growable byte buffer written front to back. */
export class Writer {
  /** The bytes; only [0, len) are written. */
  buf = new Uint8Array(1024);
  /** Bytes written. */
  len = 0;

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  /** Appends `b`. */
  bytes(b: ArrayLike<number>): void {
    const n = b.length;
    this.ensure(n);
    if (n > 32) this.buf.set(b, this.len);
    else for (let i = 0; i < n; i++) this.buf[this.len + i] = b[i];
    this.len += n;
  }

  /** Appends src[from, to). */
  copy(src: Uint8Array, from: number, to: number): void {
    const n = to - from;
    this.ensure(n);
    const buf = this.buf;
    const len = this.len;
    // A byte loop allocates nothing; a subarray for set() is a heap object per span, and
    // thousands of them per module cost a scavenge every few loads.
    if (n > 1024) buf.set(src.subarray(from, to), len);
    else for (let i = 0; i < n; i++) buf[len + i] = src[from + i];
    this.len = len + n;
  }

  /** Appends one byte. */
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.len++] = b;
  }

  /** Appends an unsigned LEB128. */
  u32(v: number): void {
    this.ensure(5);
    let x = v >>> 0;
    do {
      let b = x & 0x7f;
      x >>>= 7;
      if (x !== 0) b |= 0x80;
      this.buf[this.len++] = b;
    } while (x !== 0);
  }
}

/** Number of bytes of the unsigned LEB128 of `v`. */
export function lebLength(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/**
 * Reserves 5 bytes for a u32 LEB128 size at the end of `out`; returns where.
 * Write the content, then call {@link closeSize} with the same position.
 */
export function openSize(out: Writer): number {
  out.ensure(5);
  const slot = out.len;
  out.len += 5;
  return slot;
}

/**
 * Writes the size of the content written since {@link openSize} returned
 * `slot` into the slot, moving the content back when the size needs fewer
 * than 5 bytes.
 */
export function closeSize(out: Writer, slot: number): void {
  const start = slot + 5;
  const size = out.len - start;
  const n = lebLength(size);
  if (n < 5) {
    out.buf.copyWithin(slot + n, start, out.len);
    out.len -= 5 - n;
  }
  let x = size;
  for (let i = 0; i < n; i++) {
    out.buf[slot + i] = (x & 0x7f) | (i < n - 1 ? 0x80 : 0);
    x = Math.floor(x / 128);
  }
}

/** Writes a 5-byte signed LEB128 of `v` (0 <= v < 2^34) at `at`: a slot of fixed width. */
export function putPaddedSleb5(o: Uint8Array, at: number, v: number): void {
  o[at] = (v & 0x7f) | 0x80;
  o[at + 1] = ((v >>> 7) & 0x7f) | 0x80;
  o[at + 2] = ((v >>> 14) & 0x7f) | 0x80;
  o[at + 3] = ((v >>> 21) & 0x7f) | 0x80;
  o[at + 4] = Math.floor(v / 2 ** 28) & 0x3f;
}

/** An unsigned LEB128 padded to `width` bytes (valid: 5.2.2 allows up to 5). */
export function paddedU32(v: number, width: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < width; i++) {
    const last = i === width - 1;
    out.push((v & 0x7f) | (last ? 0 : 0x80));
    v = Math.floor(v / 128);
  }
  return out;
}
