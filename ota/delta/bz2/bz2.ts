/**
 * Streaming bzip2 over libbz2 compiled to wasm (see build.sh): a pull decoder
 * whose memory is libbz2's own state (at most ~3.7 MB for 900k blocks) plus two
 * fixed buffers, and a one-shot encoder with the same output as the C library.
 */
import { concatBytes } from "../../../lib/mod.ts";
import { DeltaError } from "../errors.ts";
import { BZ2_WASM_BASE64 } from "./_wasm.ts";

interface Bz2Exports {
  memory: WebAssembly.Memory;
  bz_alloc(n: number): number;
  bz_free(p: number): void;
  dec_new(): number;
  enc_new(level: number): number;
  dec_run(s: number, inp: number, inLen: number, out: number, outLen: number): number;
  enc_run(
    s: number,
    inp: number,
    inLen: number,
    out: number,
    outLen: number,
    action: number,
  ): number;
  avail_in(s: number): number;
  avail_out(s: number): number;
  dec_end(s: number): void;
  enc_end(s: number): void;
}

// bzlib.h return codes and actions.
const BZ_OK = 0;
const BZ_RUN_OK = 1;
const BZ_FINISH_OK = 3;
const BZ_STREAM_END = 4;
const BZ_RUN = 0;
const BZ_FINISH = 2;
const BZ_DATA_ERROR = -4;
const BZ_DATA_ERROR_MAGIC = -5;
const BZ_MEM_ERROR = -3;

const IN_CAP = 1 << 16;
const OUT_CAP = 1 << 18;

let exportsCache: Bz2Exports | undefined;

function bz2(): Bz2Exports {
  if (exportsCache === undefined) {
    const bytes = Uint8Array.from(atob(BZ2_WASM_BASE64), (c) => c.charCodeAt(0));
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
    exportsCache = instance.exports as unknown as Bz2Exports;
  }
  return exportsCache;
}

function heap(): Uint8Array {
  return new Uint8Array(bz2().memory.buffer);
}

function alloc(n: number): number {
  const p = bz2().bz_alloc(n);
  if (p === 0) throw new RangeError(`bzip2: cannot allocate ${n} bytes of wasm memory`);
  return p;
}

/** Supplies compressed bytes in order; `null` at the end of the input. */
export interface ChunkSource {
  /** Returns up to `max` further bytes, or null once the input is exhausted. */
  read(max: number): Promise<Uint8Array | null>;
}

/** A ChunkSource over bytes already in memory. */
export function bytesSource(bytes: Uint8Array): ChunkSource {
  let off = 0;
  return {
    read(max) {
      if (off >= bytes.length) return Promise.resolve(null);
      const chunk = bytes.subarray(off, Math.min(bytes.length, off + max));
      off += chunk.length;
      return Promise.resolve(chunk);
    },
  };
}

/**
 * Decodes one bzip2 stream on demand: `read` produces at most what is asked
 * for, so a decompression bomb costs only the bytes the caller wants.
 * Call `close` to release the wasm memory.
 */
export class Bz2Reader {
  #stream: number;
  #inPtr: number;
  #outPtr: number;
  #inStart = 0;
  #inEnd = 0;
  #outStart = 0;
  #outEnd = 0;
  #sourceDone = false;
  #ended = false;
  #closed = false;
  #produced = 0;

  /** `name` labels errors ("ctrl", "diff", "extra"). */
  constructor(readonly source: ChunkSource, readonly name: string) {
    const m = bz2();
    this.#stream = m.dec_new();
    if (this.#stream === 0) throw new RangeError("bzip2: cannot allocate a decoder");
    this.#inPtr = alloc(IN_CAP);
    this.#outPtr = alloc(OUT_CAP);
  }

  /** Total bytes handed out so far. */
  get produced(): number {
    return this.#produced;
  }

  /** Whether the bzip2 end-of-stream marker was reached and every byte consumed. */
  get atEnd(): boolean {
    return this.#ended && this.#outStart === this.#outEnd;
  }

  /**
   * Fills `dst` from `from` on as far as possible without waiting for more
   * compressed input; returns how far `dst` is filled. Lets the patch loop
   * skip a promise per control triple.
   */
  fill(dst: Uint8Array, from = 0): number {
    let off = from;
    while (off < dst.length) {
      if (this.#outStart === this.#outEnd) {
        if (this.#ended) break;
        if (this.#inStart === this.#inEnd && !this.#sourceDone) break;
        this.#decode();
        continue;
      }
      const n = Math.min(dst.length - off, this.#outEnd - this.#outStart);
      const at = this.#outPtr + this.#outStart;
      dst.set(heap().subarray(at, at + n), off);
      this.#outStart += n;
      this.#produced += n;
      off += n;
    }
    return off;
  }

  /**
   * Fills `dst` completely (from `from` on), waiting for input as needed.
   * @throws {DeltaError} `bzip2-truncated` if the stream ends first, `bzip2-corrupt` on bad data.
   */
  async readFull(dst: Uint8Array, from = 0): Promise<void> {
    let off = this.fill(dst, from);
    while (off < dst.length) {
      if (this.#ended && this.#outStart === this.#outEnd) {
        throw new DeltaError(
          "bzip2-truncated",
          `${this.name} stream: bzip2 data ends after ${this.#produced} bytes, ` +
            `but the control block needs ${dst.length - off} more`,
        );
      }
      await this.#refill();
      off = this.fill(dst, off);
    }
  }

  /**
   * Checks that the stream holds nothing beyond what was read: decodes to the
   * end-of-stream marker (which verifies the last block's and the stream's CRC).
   */
  async expectEnd(): Promise<void> {
    while (!this.#ended && this.#outStart === this.#outEnd) {
      if (this.#inStart === this.#inEnd && !this.#sourceDone) await this.#refill();
      else this.#decode();
    }
    if (this.#outStart !== this.#outEnd) {
      throw new DeltaError(
        "trailing-data",
        `${this.name} stream: holds more than the ${this.#produced} bytes the control block uses`,
      );
    }
  }

  /** Releases the decoder's wasm memory. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const m = bz2();
    m.dec_end(this.#stream);
    m.bz_free(this.#inPtr);
    m.bz_free(this.#outPtr);
  }

  async #refill(): Promise<void> {
    if (this.#inStart !== this.#inEnd || this.#sourceDone) return;
    const chunk = await this.source.read(IN_CAP);
    if (chunk === null) {
      this.#sourceDone = true;
    } else {
      heap().set(chunk, this.#inPtr);
      this.#inStart = 0;
      this.#inEnd = chunk.length;
    }
  }

  /** One libbz2 call over the buffered input; output replaces the (empty) out buffer. */
  #decode(): void {
    const m = bz2();
    const inLen = this.#inEnd - this.#inStart;
    const ret = m.dec_run(this.#stream, this.#inPtr + this.#inStart, inLen, this.#outPtr, OUT_CAP);
    const consumed = inLen - m.avail_in(this.#stream);
    const produced = OUT_CAP - m.avail_out(this.#stream);
    this.#inStart += consumed;
    this.#outStart = 0;
    this.#outEnd = produced;
    if (ret === BZ_STREAM_END) {
      this.#ended = true;
    } else if (ret === BZ_DATA_ERROR_MAGIC) {
      throw new DeltaError("bzip2-corrupt", `${this.name} stream: not bzip2 data (bad magic)`);
    } else if (ret === BZ_DATA_ERROR) {
      throw new DeltaError(
        "bzip2-corrupt",
        `${this.name} stream: bzip2 data is corrupt (CRC or block structure) ` +
          `after ${this.#produced} bytes`,
      );
    } else if (ret === BZ_MEM_ERROR) {
      throw new RangeError(`${this.name} stream: bzip2 decoder ran out of wasm memory`);
    } else if (ret !== BZ_OK) {
      throw new DeltaError("bzip2-corrupt", `${this.name} stream: libbz2 error ${ret}`);
    } else if (consumed === 0 && produced === 0 && this.#sourceDone) {
      throw new DeltaError(
        "bzip2-truncated",
        `${this.name} stream: bzip2 data is cut short after ${this.#produced} bytes`,
      );
    }
  }
}

/**
 * Compresses `data` into one bzip2 stream with block size `level` (1..9), as
 * `BZ2_bzWriteOpen(…, level, 0, 0)` does: the bytes equal the C library's.
 */
export function bz2Compress(data: Uint8Array, level = 9): Uint8Array {
  if (!Number.isInteger(level) || level < 1 || level > 9) {
    throw new RangeError(`bzip2 level must be an integer 1..9, got ${level}`);
  }
  const m = bz2();
  const s = m.enc_new(level);
  if (s === 0) throw new RangeError("bzip2: cannot allocate an encoder");
  const inPtr = alloc(IN_CAP * 16);
  const outPtr = alloc(OUT_CAP);
  const chunks: Uint8Array[] = [];
  try {
    let off = 0;
    for (;;) {
      const n = Math.min(IN_CAP * 16, data.length - off);
      const finishing = off + n === data.length;
      heap().set(data.subarray(off, off + n), inPtr);
      let inStart = 0;
      for (;;) {
        const ret = m.enc_run(
          s,
          inPtr + inStart,
          n - inStart,
          outPtr,
          OUT_CAP,
          finishing ? BZ_FINISH : BZ_RUN,
        );
        inStart = n - m.avail_in(s);
        const produced = OUT_CAP - m.avail_out(s);
        if (produced > 0) {
          chunks.push(heap().slice(outPtr, outPtr + produced));
        }
        if (ret === BZ_STREAM_END) break;
        if (ret !== BZ_RUN_OK && ret !== BZ_FINISH_OK) {
          throw new Error(`bzip2: libbz2 compress error ${ret}`);
        }
        if (!finishing && inStart === n) break;
      }
      off += n;
      if (finishing) break;
    }
  } finally {
    m.enc_end(s);
    m.bz_free(inPtr);
    m.bz_free(outPtr);
  }
  return concatBytes(chunks);
}
