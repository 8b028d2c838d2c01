/**
 * Writing WebAssembly binaries by hand (Core spec 5), for modules wabt's
 * text format would take long to build: hundreds of thousands of functions
 * or types. Every helper appends with a loop, never a spread, so megabytes
 * of output do not overflow the stack.
 *
 * @module
 */

/** Appends `n` as unsigned LEB128 (5.2.2) to `out`; returns `out`. */
export function leb128(n: number, out: number[] = []): number[] {
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

/** Appends section `id` with `body` (5.5.2) to `out`. */
export function section(out: number[], id: number, body: number[]): void {
  out.push(id);
  leb128(body.length, out);
  for (const b of body) out.push(b);
}

/** The magic and version every module starts with. */
export const HEADER: readonly number[] = [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0];

/**
 * The export section of ABI v1: `memory` (memory 0), `edge_alloc` (function
 * 0) and `edge_on_message` (function 1).
 */
export function abiExports(): number[] {
  const e: number[] = [3];
  for (
    const [name, kind, index] of [["memory", 2, 0], ["edge_alloc", 0, 0], [
      "edge_on_message",
      0,
      1,
    ]] as const
  ) {
    leb128(name.length, e);
    for (const c of name) e.push(c.charCodeAt(0));
    e.push(kind, index);
  }
  return e;
}
