/**
 * TypeScript side of the bsdiff core (diffcore.c compiled to wasm): one fresh
 * wasm instance per diff, so its memory (up to 4 GiB) is released with it.
 */
import { DIFFCORE_WASM_BASE64 } from "./_wasm.ts";

interface DiffcoreExports {
  memory: WebAssembly.Memory;
  dc_alloc(n: number): number;
  dc_free(p: number): void;
  dc_suffix_array(text: number, n: number, I: number): number;
  dc_diff_new(
    I: number,
    old: number,
    oldSize: number,
    nw: number,
    newSize: number,
    db: number,
    eb: number,
    ctrl: number,
    ctrlCap: number,
  ): number;
  dc_diff_run(s: number): number;
  dc_diff_scan(s: number): number;
  dc_diff_dblen(s: number): number;
  dc_diff_eblen(s: number): number;
}

let compiled: WebAssembly.Module | undefined;

/** A fresh instance of the core with its own memory. */
export class Diffcore {
  readonly #x: DiffcoreExports;

  constructor() {
    compiled ??= new WebAssembly.Module(
      Uint8Array.from(atob(DIFFCORE_WASM_BASE64), (c) => c.charCodeAt(0)),
    );
    this.#x = new WebAssembly.Instance(compiled, {}).exports as unknown as DiffcoreExports;
  }

  get exports(): DiffcoreExports {
    return this.#x;
  }

  /** Allocates `n` bytes (at least 1) of wasm memory, or throws a RangeError. */
  alloc(n: number): number {
    const p = this.#x.dc_alloc(Math.max(1, n));
    if (p === 0) {
      throw new RangeError(`bsdiff: cannot allocate ${n} bytes of wasm memory (4 GiB in all)`);
    }
    return p;
  }

  /** Copies `bytes` into wasm memory; returns the address. */
  put(bytes: Uint8Array): number {
    const p = this.alloc(bytes.length);
    this.bytes(p, bytes.length).set(bytes);
    return p;
  }

  /** A view of wasm memory (valid until the next allocation). */
  bytes(p: number, n: number): Uint8Array {
    return new Uint8Array(this.#x.memory.buffer, p, n);
  }

  /** A view of wasm memory as 32-bit integers (valid until the next allocation). */
  ints(p: number, n: number): Int32Array {
    return new Int32Array(this.#x.memory.buffer, p, n);
  }
}

/**
 * Sorts the suffixes of `text` (SA-IS) in bsdiff's qsufsort layout: `I[0] = n`
 * (the empty suffix), then the suffixes in lexicographic order.
 */
export function suffixArray(text: Uint8Array): Int32Array {
  const core = new Diffcore();
  const t = core.put(text);
  const I = core.alloc(4 * (text.length + 1));
  if (core.exports.dc_suffix_array(t, text.length, I) !== 0) {
    throw new RangeError(`suffixArray: out of wasm memory for ${text.length} bytes`);
  }
  return core.ints(I, text.length + 1).slice();
}
