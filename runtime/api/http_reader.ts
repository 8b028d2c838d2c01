/**
 * A buffered reader over one connection, for the HTTP/1.1 server: heads are
 * found in the buffer, bodies are read through it or, when it is empty,
 * straight into their own chunks.
 *
 * @module
 */

const CRLFCRLF = [13, 10, 13, 10];

/** The read half of a connection. */
export interface ByteReader {
  /** Reads into `p`; the number of bytes, or null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
}

/** Reads from a `Deno.Conn` through a buffer that grows up to `maxBuffered` bytes. */
export class ConnReader {
  #conn: ByteReader;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #max: number;
  /** Called after every read that returned bytes (the server's activity clock). */
  onBytes: (n: number) => void = () => {};

  /** Builds the reader; `maxBuffered` bounds the buffer (the longest head). */
  constructor(conn: ByteReader, maxBuffered: number) {
    this.#conn = conn;
    this.#max = maxBuffered;
    this.#buf = new Uint8Array(Math.min(16384, maxBuffered));
  }

  /** Bytes buffered and not consumed. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Reads more into the buffer; false at end of stream. */
  async fill(): Promise<boolean> {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end === this.#buf.length) {
      if (this.#start > 0) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      } else {
        const grown = new Uint8Array(Math.min(this.#max, this.#buf.length * 2));
        if (grown.length === this.#buf.length) throw new RangeError("reader buffer is full");
        grown.set(this.#buf.subarray(0, this.#end));
        this.#buf = grown;
      }
    }
    const n = await this.#conn.read(this.#buf.subarray(this.#end));
    if (n === null) return false;
    this.#end += n;
    this.onBytes(n);
    return true;
  }

  /** Whether the buffer is full (a head that long is too long). */
  get full(): boolean {
    return this.#start === 0 && this.#end === this.#max;
  }

  /** Drops leading CRLFs (RFC 9112 section 2.2 lets a server ignore them before a request); returns how many bytes. */
  skipEmptyLines(): number {
    const from = this.#start;
    while (
      this.#end - this.#start >= 2 && this.#buf[this.#start] === 13 &&
      this.#buf[this.#start + 1] === 10
    ) this.#start += 2;
    return this.#start - from;
  }

  /**
   * The bytes before the first empty line (CRLF CRLF), consumed with it; null
   * when the buffer holds no complete head yet. `from` skips what an earlier
   * call already searched. A view into the buffer: valid until the next read.
   */
  takeHead(from = 0): Uint8Array | null {
    // Line by line: the native indexOf finds each CR, a head has a few lines.
    const buf = this.#buf.subarray(0, this.#end);
    let i = Math.max(this.#start, this.#start + from - 3);
    for (;;) {
      i = buf.indexOf(CRLFCRLF[0], i);
      if (i < 0 || i + 3 >= buf.length) return null;
      if (buf[i + 1] === CRLFCRLF[1] && buf[i + 2] === CRLFCRLF[2] && buf[i + 3] === CRLFCRLF[3]) {
        const head = buf.subarray(this.#start, i);
        this.#start = i + 4;
        return head;
      }
      i++;
    }
  }

  /** The index of the first CRLF in the buffer (relative to it), or -1. */
  findLine(): number {
    for (let i = this.#start; i + 1 < this.#end; i++) {
      if (this.#buf[i] === 13 && this.#buf[i + 1] === 10) return i - this.#start;
    }
    return -1;
  }

  /** Consumes `n` buffered bytes and returns a copy of them. */
  take(n: number): Uint8Array {
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /** Consumes `n` buffered bytes and returns a view of them: valid until the next read. */
  view(n: number): Uint8Array {
    const out = this.#buf.subarray(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /**
   * Up to `max` body bytes: from the buffer if it holds any, else read
   * straight into a fresh chunk. Null at end of stream.
   */
  async readChunk(max: number): Promise<Uint8Array | null> {
    if (this.#end > this.#start) return this.take(Math.min(max, this.#end - this.#start));
    const chunk = new Uint8Array(Math.min(max, 65536));
    const n = await this.#conn.read(chunk);
    if (n === null) return null;
    this.onBytes(n);
    return chunk.subarray(0, n);
  }
}
