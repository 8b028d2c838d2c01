/**
 * Opens a BSDIFF40 patch given as bytes, a file path or a stream, and hands
 * out one ChunkSource per block. Only the compressed bytes are ever held: a
 * file is read with three cursors, a stream buffers the control and diff blocks
 * (sizes proven by parseHeader) and feeds the extra block straight through.
 */
import { bytesSource, type ChunkSource } from "./bz2/bz2.ts";
import { DeltaError } from "./errors.ts";
import { HEADER_SIZE, parseHeader, type PatchHeader } from "./format.ts";

/** A patch: bytes in memory, a file path, or a byte stream. */
export type PatchInput = Uint8Array | string | URL | ReadableStream<Uint8Array>;

export interface OpenedPatch {
  header: PatchHeader;
  ctrl: ChunkSource;
  diff: ChunkSource;
  extra: ChunkSource;
  close(): void;
}

function truncated(what: string, want: number, got: number): DeltaError {
  return new DeltaError(
    "bzip2-truncated",
    `patch ends inside the ${what}: the header promises ${want} bytes, only ${got} are present`,
  );
}

export async function openPatch(input: PatchInput, maxNewSize: number): Promise<OpenedPatch> {
  if (input instanceof Uint8Array) return openBytes(input, maxNewSize);
  if (input instanceof ReadableStream) return await openStream(input, maxNewSize);
  return await openFile(input, maxNewSize);
}

function openBytes(bytes: Uint8Array, maxNewSize: number): OpenedPatch {
  const header = parseHeader(bytes.subarray(0, HEADER_SIZE), maxNewSize);
  const diffStart = HEADER_SIZE + header.ctrlLength;
  const extraStart = diffStart + header.diffLength;
  if (extraStart > bytes.length) {
    throw truncated(
      "control and diff blocks",
      extraStart - HEADER_SIZE,
      bytes.length - HEADER_SIZE,
    );
  }
  return {
    header,
    ctrl: bytesSource(bytes.subarray(HEADER_SIZE, diffStart)),
    diff: bytesSource(bytes.subarray(diffStart, extraStart)),
    extra: bytesSource(bytes.subarray(extraStart)),
    close() {},
  };
}

async function openFile(path: string | URL, maxNewSize: number): Promise<OpenedPatch> {
  const files: Deno.FsFile[] = [];
  try {
    const first = await Deno.open(path, { read: true });
    files.push(first);
    const size = (await first.stat()).size;
    const head = new Uint8Array(Math.min(HEADER_SIZE, size));
    await readExactly(first, head);
    const header = parseHeader(head, maxNewSize);
    const diffStart = HEADER_SIZE + header.ctrlLength;
    const extraStart = diffStart + header.diffLength;
    if (extraStart > size) {
      throw truncated("control and diff blocks", extraStart - HEADER_SIZE, size - HEADER_SIZE);
    }
    files.push(await Deno.open(path, { read: true }), await Deno.open(path, { read: true }));
    const regions = [[HEADER_SIZE, diffStart], [diffStart, extraStart], [extraStart, size]];
    const sources = await Promise.all(
      regions.map(([start, end], i) => fileRegion(files[i], start, end)),
    );
    return {
      header,
      ctrl: sources[0],
      diff: sources[1],
      extra: sources[2],
      close() {
        for (const f of files) f.close();
      },
    };
  } catch (e) {
    for (const f of files) f.close();
    throw e;
  }
}

async function readExactly(file: Deno.FsFile, dst: Uint8Array): Promise<void> {
  let off = 0;
  while (off < dst.length) {
    const n = await file.read(dst.subarray(off));
    if (n === null) break;
    off += n;
  }
  if (off < dst.length) {
    throw new DeltaError("truncated-header", `patch file ended after ${off} bytes`);
  }
}

async function fileRegion(file: Deno.FsFile, start: number, end: number): Promise<ChunkSource> {
  await file.seek(start, Deno.SeekMode.Start);
  let pos = start;
  return {
    async read(max) {
      if (pos >= end) return null;
      const buf = new Uint8Array(Math.min(max, end - pos));
      const n = await file.read(buf);
      if (n === null) return null;
      pos += n;
      return buf.subarray(0, n);
    },
  };
}

/** Pulls exact byte counts off a stream, keeping the unread rest of a chunk. */
class StreamCursor {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #pending: Uint8Array = new Uint8Array(0);
  #done = false;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  /** Up to `max` bytes, or null at the end of the stream. */
  async read(max: number): Promise<Uint8Array | null> {
    while (this.#pending.length === 0) {
      if (this.#done) return null;
      const r = await this.#reader.read();
      if (r.done) {
        this.#done = true;
        return null;
      }
      this.#pending = r.value;
    }
    const out = this.#pending.subarray(0, max);
    this.#pending = this.#pending.subarray(out.length);
    return out;
  }

  /** Exactly `n` bytes (allocated only as they arrive), or fewer at the end. */
  async take(n: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let got = 0;
    while (got < n) {
      const c = await this.read(Math.min(n - got, 1 << 20));
      if (c === null) break;
      parts.push(c.slice());
      got += c.length;
    }
    if (parts.length === 1) return parts[0];
    const out = new Uint8Array(got);
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }

  cancel(): void {
    this.#reader.cancel().catch(() => {});
  }
}

async function openStream(
  stream: ReadableStream<Uint8Array>,
  maxNewSize: number,
): Promise<OpenedPatch> {
  const cursor = new StreamCursor(stream);
  try {
    const header = parseHeader(await cursor.take(HEADER_SIZE), maxNewSize);
    const ctrl = await cursor.take(header.ctrlLength);
    if (ctrl.length < header.ctrlLength) {
      throw truncated("control block", header.ctrlLength, ctrl.length);
    }
    const diff = await cursor.take(header.diffLength);
    if (diff.length < header.diffLength) {
      throw truncated("diff block", header.diffLength, diff.length);
    }
    return {
      header,
      ctrl: bytesSource(ctrl),
      diff: bytesSource(diff),
      extra: { read: (max) => cursor.read(max) },
      close: () => cursor.cancel(),
    };
  } catch (e) {
    cursor.cancel();
    throw e;
  }
}
