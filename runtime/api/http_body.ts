/**
 * Request bodies of the HTTP/1.1 server as `ReadableStream`s that read the
 * connection only when the handler pulls: a fixed `Content-Length`, or
 * `Transfer-Encoding: chunked` decoded (RFC 9112 section 7.1). Nothing is
 * buffered beyond the chunk being handed over, so a body's size is bounded by
 * whoever reads it (the API's body limits), not here.
 *
 * @module
 */
import { ApiError } from "./errors.ts";
import type { ConnReader } from "./http_reader.ts";
import { latin1, type RequestHead } from "./http_parse.ts";

/** Longest chunk-size line (with extensions) and longest trailer section. */
const MAX_CHUNK_LINE = 4096;
const MAX_TRAILERS = 16384;

/** How far a request body got; the connection loop reads it after the answer. */
export interface BodyState {
  /** Every byte of the body was read (the next request can follow). */
  done: boolean;
  /** Why reading failed, if it did (malformed, timed out, connection gone). */
  error: unknown;
}

/** Hooks of {@linkcode requestBody}. */
export interface BodyHooks {
  /** Called before the first read (sends `100 Continue` when the client waits for it). */
  beforeFirstRead(): Promise<void>;
  /** A read from the connection starts (arm the body's deadline) or ends. */
  reading(active: boolean): void;
}

const malformed = (what: string) =>
  new ApiError(400, "bad_request", `malformed chunked body: ${what}`, { field: "body" });
const truncated = () =>
  new ApiError(400, "bad_request", "the connection ended inside the request body", {
    field: "body",
  });

/**
 * The body of `head`: its bytes when they are all buffered already (a view
 * into the reader's buffer, valid until its next read), else a stream that
 * reads them as pulled; null when the request has none. `state` records
 * whether it was read to its end.
 */
export function requestBody(
  reader: ConnReader,
  head: RequestHead,
  state: BodyState,
  hooks: BodyHooks,
): ReadableStream<Uint8Array> | Uint8Array | null {
  if (!head.chunked && !head.contentLength) {
    state.done = true;
    return null;
  }
  // Most bodies arrive with their head: hand them over as bytes, which the
  // handler reads without the cost of a stream.
  if (!head.chunked && !head.expectContinue && head.contentLength! <= reader.buffered) {
    state.done = true;
    return reader.view(head.contentLength!);
  }
  let started = false;
  const next = head.chunked ? chunkedSource(reader) : fixedSource(reader, head.contentLength!);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (!started) {
          started = true;
          await hooks.beforeFirstRead();
        }
        hooks.reading(true);
        let chunk: Uint8Array | null;
        try {
          chunk = await next();
        } finally {
          hooks.reading(false);
        }
        if (chunk === null) {
          state.done = true;
          controller.close();
        } else {
          controller.enqueue(chunk);
        }
      } catch (err) {
        state.error ??= err;
        controller.error(state.error);
      }
    },
    cancel() {
      // The handler lost interest: the rest of the body stays unread and the
      // connection closes after the answer.
    },
  }, { highWaterMark: 0 });
}

/** A `Content-Length` body: chunks until `length` bytes were read, then null. */
function fixedSource(reader: ConnReader, length: number): () => Promise<Uint8Array | null> {
  let left = length;
  return async () => {
    if (left === 0) return null;
    const chunk = await reader.readChunk(left);
    if (chunk === null) throw truncated();
    left -= chunk.length;
    return chunk;
  };
}

/** A chunked body (RFC 9112 section 7.1): decoded chunks, then null after the trailers. */
function chunkedSource(reader: ConnReader): () => Promise<Uint8Array | null> {
  let left = 0; // bytes of the current chunk still to read
  let finished = false;

  const line = async (max: number): Promise<string> => {
    for (;;) {
      const at = reader.findLine();
      if (at >= 0) {
        const bytes = reader.take(at + 2);
        return latin1(bytes.subarray(0, at));
      }
      if (reader.buffered > max) throw malformed("a line is too long");
      if (!await reader.fill()) throw truncated();
    }
  };

  return async () => {
    if (finished) return null;
    if (left === 0) {
      const sizeLine = await line(MAX_CHUNK_LINE);
      const m = /^([0-9A-Fa-f]{1,12})[ \t]*(?:;.*)?$/.exec(sizeLine);
      if (!m) throw malformed(`bad chunk size ${JSON.stringify(sizeLine.slice(0, 40))}`);
      left = parseInt(m[1], 16);
      if (left === 0) {
        // The last chunk: skip the trailer section up to its empty line.
        let trailers = 0;
        for (;;) {
          const t = await line(MAX_TRAILERS);
          if (t === "") break;
          trailers += t.length + 2;
          if (trailers > MAX_TRAILERS) throw malformed("the trailers are too long");
        }
        finished = true;
        return null;
      }
    }
    const chunk = await reader.readChunk(left);
    if (chunk === null) throw truncated();
    left -= chunk.length;
    if (left === 0) {
      const end = await line(2);
      if (end !== "") throw malformed("a chunk is longer than its size");
    }
    return chunk;
  };
}
