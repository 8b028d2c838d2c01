/**
 * The request head of HTTP/1.1 (RFC 9112): the request line (section 3), the
 * header fields (section 5) and the message framing they imply (section 6).
 * Strict on purpose: anything two parsers could read differently (both
 * `Content-Length` and `Transfer-Encoding`, differing lengths, obs-fold, a
 * bare CR) is refused, so a proxy in front of edged and edged itself always
 * agree where one request ends and the next begins.
 *
 * @module
 */
import { ApiError } from "./errors.ts";

/** Most header fields in one request (431 beyond). */
export const MAX_HEADER_FIELDS = 100;

/** A parsed request head. */
export interface RequestHead {
  method: string;
  /** The request target as sent: origin-form (`/path?q`) or absolute-form. */
  target: string;
  /** `HTTP/1.0` or `HTTP/1.1`. */
  version: "1.0" | "1.1";
  /** Every field in order, names lower-cased. */
  headers: [string, string][];
  /** The `Host` field (required in HTTP/1.1). */
  host: string | null;
  /** Body length from `Content-Length`, or null. */
  contentLength: number | null;
  /** Whether the body is `Transfer-Encoding: chunked`. */
  chunked: boolean;
  /** Whether the connection may carry another request after this one. */
  keepAlive: boolean;
  /** `Expect: 100-continue` (RFC 9110 section 10.1.1). */
  expectContinue: boolean;
}

/** RFC 9110 section 5.6.2: tchar. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/**
 * Anything a head may not hold: controls other than HTAB in field values
 * (RFC 9110 section 5.5), and a CR or LF that is not part of a CRLF.
 */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const FORBIDDEN = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n/;
/** Request targets: visible ASCII only. */
const TARGET = /^[\x21-\x7e]+$/;
/** Host: reg-name, IPv4 or an IP literal, with an optional port. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::\d{0,5})?$/;

const badRequest = (message: string, field?: string) =>
  new ApiError(400, "bad_request", message, field ? { field } : {});

/** UTF-8, which for ASCII bytes is one char per byte as well, and native. */
const ascii = new TextDecoder();

/** The head's bytes (without the final empty line) as a string of one char per byte. */
export function latin1(bytes: Uint8Array): string {
  let i = 0;
  while (i < bytes.length && bytes[i] < 0x80) i++;
  if (i === bytes.length) return ascii.decode(bytes);
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192) as unknown as number[]);
  }
  return s;
}

/** `line` from `start` without leading and trailing SP and HTAB (OWS, RFC 9110 section 5.6.3). */
function trimOws(line: string, start: number): string {
  let a = start;
  let b = line.length;
  while (a < b && (line.charCodeAt(a) === 32 || line.charCodeAt(a) === 9)) a++;
  while (b > a && (line.charCodeAt(b - 1) === 32 || line.charCodeAt(b - 1) === 9)) b--;
  return line.slice(a, b);
}

/**
 * Parses a request head: the bytes before the empty line that ends it.
 * Throws an `ApiError` with the status to answer (400, 417, 431, 501, 505).
 *
 * @example
 * ```ts
 * const head = parseHead(new TextEncoder().encode("GET /healthz HTTP/1.1\r\nHost: x"));
 * head.method; // "GET"
 * ```
 */
export function parseHead(bytes: Uint8Array): RequestHead {
  return parseHeadText(latin1(bytes));
}

/**
 * Parses heads as {@linkcode parseHead} does, remembering the last few: a
 * client sends the same head (host, token, type, length) request after
 * request, and what a head says depends on nothing but its bytes. What it
 * returns is frozen, as it may be shared between requests.
 */
export class HeadParser {
  #seen = new Map<string, RequestHead>();
  readonly #maxEntries: number;
  readonly #maxChars: number;

  /** Remembers up to `maxEntries` heads of at most `maxChars` bytes. */
  constructor(maxEntries = 64, maxChars = 2048) {
    this.#maxEntries = maxEntries;
    this.#maxChars = maxChars;
  }

  /** The head of `bytes`; throws as {@linkcode parseHead} does (a refused head is not remembered). */
  parse(bytes: Uint8Array): RequestHead {
    const text = latin1(bytes);
    let head = this.#seen.get(text);
    if (head === undefined) {
      head = parseHeadText(text);
      if (text.length <= this.#maxChars) {
        if (this.#seen.size >= this.#maxEntries) this.#seen.clear();
        for (const field of head.headers) Object.freeze(field);
        Object.freeze(head.headers);
        this.#seen.set(text, Object.freeze(head));
      }
    }
    return head;
  }
}

function parseHeadText(text: string): RequestHead {
  const bad = FORBIDDEN.exec(text);
  if (bad) {
    throw badRequest(
      bad[0] === "\r" || bad[0] === "\n"
        ? "a bare CR or LF in the head"
        : `a control character (0x${bad[0].charCodeAt(0).toString(16)}) in the head`,
    );
  }
  const lines = text.split("\r\n");
  const [method, target, version, extra] = lines[0].split(" ");
  if (extra !== undefined || !method || !target || !version) {
    throw badRequest("the request line must be METHOD TARGET HTTP-VERSION");
  }
  if (!TOKEN.test(method)) throw badRequest("the method is not a token");
  if (!/^HTTP\/1\.[01]$/.test(version)) {
    if (/^HTTP\/\d\.\d$/.test(version)) {
      throw new ApiError(505, "http_version_not_supported", `${version} is not supported`);
    }
    throw badRequest("the HTTP version is malformed");
  }
  if (!TARGET.test(target)) throw badRequest("the request target is malformed");
  if (!target.startsWith("/") && !/^https?:\/\//i.test(target)) {
    throw badRequest("the request target must be a path or an absolute http URL");
  }
  if (lines.length - 1 > MAX_HEADER_FIELDS) {
    throw new ApiError(
      431,
      "header_fields_too_large",
      `more than ${MAX_HEADER_FIELDS} header fields`,
    );
  }

  const headers: [string, string][] = [];
  let host: string | null = null;
  let hosts = 0;
  let lengths: string[] = [];
  const codings: string[] = [];
  const connection: string[] = [];
  let expect: string | null = null;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    if (line[0] === " " || line[0] === "\t") {
      throw badRequest("obsolete line folding is not accepted (RFC 9112 section 5.2)");
    }
    const colon = line.indexOf(":");
    if (colon <= 0) throw badRequest("a header field without a name");
    const name = line.slice(0, colon).toLowerCase();
    if (!TOKEN.test(name)) throw badRequest(`header field name ${JSON.stringify(name)} is invalid`);
    const value = trimOws(line, colon + 1);
    headers.push([name, value]);
    switch (name) {
      case "host":
        hosts++;
        host = value;
        break;
      case "content-length":
        lengths = lengths.concat(value.split(",").map((v) => v.trim()));
        break;
      case "transfer-encoding":
        for (const c of value.split(",")) codings.push(c.trim().toLowerCase());
        break;
      case "connection":
        for (const c of value.split(",")) connection.push(c.trim().toLowerCase());
        break;
      case "expect":
        expect = value.toLowerCase();
        break;
    }
  }

  const v = version === "HTTP/1.1" ? "1.1" : "1.0";
  if (v === "1.1" && hosts !== 1) {
    throw badRequest("HTTP/1.1 needs exactly one Host header (RFC 9112 section 3.2)", "host");
  }
  if (hosts > 1) throw badRequest("more than one Host header", "host");
  if (host !== null && !HOST.test(host)) throw badRequest("the Host header is malformed", "host");

  // RFC 9112 section 6.3: the framing of the body.
  let contentLength: number | null = null;
  let chunked = false;
  if (codings.length > 0) {
    if (v === "1.0") throw badRequest("Transfer-Encoding in an HTTP/1.0 request");
    if (lengths.length > 0) {
      throw badRequest("both Transfer-Encoding and Content-Length (RFC 9112 section 6.1)");
    }
    if (codings.length !== 1 || codings[0] !== "chunked") {
      throw new ApiError(
        501,
        "not_implemented",
        `Transfer-Encoding ${JSON.stringify(codings.join(", "))}: only chunked is supported`,
      );
    }
    chunked = true;
  } else if (lengths.length > 0) {
    if (!lengths.every((l) => /^\d{1,15}$/.test(l) && l === lengths[0])) {
      throw badRequest("Content-Length is malformed or repeated with different values");
    }
    contentLength = Number(lengths[0]);
  }

  let expectContinue = false;
  if (expect !== null) {
    if (expect !== "100-continue") {
      throw new ApiError(417, "expectation_failed", `Expect: ${expect} is not supported`);
    }
    expectContinue = v === "1.1";
  }

  const keepAlive = v === "1.1" ? !connection.includes("close") : connection.includes("keep-alive");
  return {
    method,
    target,
    version: v,
    headers,
    host,
    contentLength,
    chunked,
    keepAlive,
    expectContinue,
  };
}

/**
 * The value of field `name` (lower-case) as a `Headers` object gives it: the
 * values of every line with that name joined by ", ", or undefined.
 */
export function fieldValue(head: RequestHead, name: string): string | undefined {
  let value: string | undefined;
  for (const [k, v] of head.headers) {
    if (k === name) value = value === undefined ? v : `${value}, ${v}`;
  }
  return value;
}
