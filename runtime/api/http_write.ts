/**
 * Responses of the HTTP/1.1 server (RFC 9112 sections 4 and 6): the status
 * line, the fields, and the body with a `Content-Length` when it is known
 * (a handler's own, or learnt by reading the answer whole).
 *
 * @module
 */

/** The write half of a connection. */
export interface ByteWriter {
  /** Writes some of `p`; resolves with how many bytes. */
  write(p: Uint8Array): Promise<number>;
  /** Writes all of `p` (when the writer has a cheaper way than `write` in a loop). */
  writeAll?(p: Uint8Array): Promise<void>;
}

const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  411: "Length Required",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  417: "Expectation Failed",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

/** Fields the server owns: a handler's values for them are replaced. */
const HOP_BY_HOP = new Set([
  "connection",
  "content-length",
  "keep-alive",
  "transfer-encoding",
  "upgrade",
  "date",
]);

/** Writes all of `bytes` (one `write`, and one promise reaction, when the socket takes them at once). */
export function writeAll(conn: ByteWriter, bytes: Uint8Array): Promise<void> {
  if (conn.writeAll) return conn.writeAll(bytes);
  return conn.write(bytes).then((n) => {
    if (n < bytes.length) return writeAll(conn, bytes.subarray(n));
  });
}

let dateSecond = -1;
let dateValue = "";

/** The `Date` field (RFC 9110 section 6.6.1), formatted once a second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}

function statusLine(status: number): string {
  return `HTTP/1.1 ${status} ${REASONS[status] ?? ""}\r\ndate: ${httpDate()}\r\n`;
}

function head(
  status: number,
  fields: Iterable<readonly [string, string]>,
  extra: string,
  close: boolean,
  version: "1.0" | "1.1",
): string {
  let s = statusLine(status);
  for (const [k, v] of fields) {
    if (!HOP_BY_HOP.has(k)) s += `${k}: ${v}\r\n`;
  }
  if (close) s += "connection: close\r\n";
  else if (version === "1.0") s += "connection: keep-alive\r\n";
  return s + extra + "\r\n";
}

/**
 * A head as bytes, one per char (field values are byte strings, RFC 9110
 * section 5.5, not UTF-8), followed by `body`, in one buffer.
 */
function bytesOf(head: string, body?: Uint8Array): Uint8Array {
  const out = new Uint8Array(head.length + (body?.length ?? 0));
  for (let i = 0; i < head.length; i++) out[i] = head.charCodeAt(i);
  if (body) out.set(body, head.length);
  return out;
}

/** What {@linkcode writeResponse} needs to know about the request. */
export interface WriteOptions {
  /** The request was HEAD: fields only. */
  headOnly: boolean;
  /** Say `connection: close`. */
  close: boolean;
  version: "1.0" | "1.1";
}

/** Answers at least this long, with a `Content-Length` set by the handler, are streamed. */
const STREAM_FROM = 65536;

/**
 * Writes `res` to `conn`, always with a `Content-Length`: an answer whose
 * handler set one of at least 64 KiB is streamed, any other is read whole
 * first (the API's answers are small; reading a body through a stream reader
 * costs more than the rest of a small request) and written at once. Resolves
 * once everything was written; rejects (and the connection must close) when
 * the body failed or was shorter than its `Content-Length`.
 */
export async function writeResponse(
  conn: ByteWriter,
  res: Response,
  o: WriteOptions,
): Promise<void> {
  const known = res.headers.get("content-length");
  if (o.headOnly || res.status === 204 || res.status === 304 || res.status < 200) {
    // A HEAD answer repeats the GET answer's length when the handler knew it.
    const length = o.headOnly && known ? `content-length: ${known}\r\n` : "";
    await writeAll(conn, bytesOf(head(res.status, res.headers, length, o.close, o.version)));
    return;
  }
  const declared = known !== null && /^\d{1,15}$/.test(known) ? Number(known) : null;
  if (declared === null || declared < STREAM_FROM) {
    const body = await res.bytes();
    const h = head(
      res.status,
      res.headers,
      `content-length: ${body.length}\r\n`,
      o.close,
      o.version,
    );
    await writeAll(conn, bytesOf(h, body));
    return;
  }
  await writeAll(
    conn,
    bytesOf(
      head(res.status, res.headers, `content-length: ${declared}\r\n`, o.close, o.version),
    ),
  );
  const reader = res.body!.getReader();
  let left = declared;
  try {
    while (left > 0) {
      const r = await reader.read();
      if (r.done) throw new Error(`the answer ended ${left} bytes before its Content-Length`);
      const part = r.value.length > left ? r.value.subarray(0, left) : r.value;
      await writeAll(conn, part);
      left -= part.length;
    }
  } finally {
    if (left > 0) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/**
 * An answer built without a web `Response` (the server's fast path): its
 * status, its fields (names lower-case, as a `Headers` object would list
 * them) and its whole body (not changed once handed over: the writer may
 * send the same bytes again for an answer with the same body object).
 */
export interface RawAnswer {
  status: number;
  headers: readonly (readonly [string, string])[];
  body: Uint8Array;
}

/**
 * Writes `answer` to `conn` under the same rules as {@linkcode writeResponse}
 * (a `Content-Length`, no body for HEAD, 204, 304 and 1xx) in one write.
 */
export function writeRaw(
  conn: ByteWriter,
  answer: RawAnswer,
  o: WriteOptions,
): Promise<void> {
  const { status, headers, body } = answer;
  if (o.headOnly || status === 204 || status === 304 || status < 200) {
    const length = o.headOnly ? `content-length: ${body.length}\r\n` : "";
    return writeAll(conn, bytesOf(head(status, headers, length, o.close, o.version)));
  }
  return writeAll(conn, rawBytes(answer, o));
}

/**
 * The last answer of {@linkcode writeRaw}, whole: a hot route answers the
 * same fields and body (the same objects), but for the date, again and
 * again, so it is built once a second and written as is (never changed once
 * built: writes in flight may still read it).
 */
let last = {
  status: 0,
  headers: null as RawAnswer["headers"] | null,
  body: null as Uint8Array | null,
  close: false,
  version: "1.1",
  date: "",
  bytes: new Uint8Array(0) as Uint8Array,
};

function rawBytes(answer: RawAnswer, o: WriteOptions): Uint8Array {
  const { status, headers, body } = answer;
  const date = httpDate();
  if (
    last.status !== status || last.headers !== headers || last.body !== body ||
    last.close !== o.close || last.version !== o.version || last.date !== date
  ) {
    const h = head(status, headers, `content-length: ${body.length}\r\n`, o.close, o.version);
    last = {
      status,
      headers,
      body,
      close: o.close,
      version: o.version,
      date,
      bytes: bytesOf(h, body),
    };
  }
  return last.bytes;
}

/** A complete response as bytes, for answers the server writes itself (refusals). */
export function cannedResponse(
  status: number,
  body: string,
  headers: Record<string, string>,
): Uint8Array {
  let s = statusLine(status);
  for (const [k, v] of Object.entries(headers)) s += `${k}: ${v}\r\n`;
  const b = new TextEncoder().encode(body);
  s += `content-length: ${b.length}\r\nconnection: close\r\n\r\n`;
  return bytesOf(s, b);
}
