/**
 * The API's HTTP/1.1 server: its own accept loop on `Deno.listen`, with the
 * accounting `Deno.serve` does not offer (it has no connection cap, no header
 * or idle timeout, and its accept loop ends the server on `EMFILE`):
 *
 * - **a cap on open connections**: at the cap, a new connection takes the
 *   place of the one that has waited longest without a request under way
 *   (idle between requests, or still sending its head), so a flood of
 *   half-open connections cannot keep a prompt client such as a `/healthz`
 *   probe out (after each such replacement the loop lets the event loop read
 *   what the connections already sent before it accepts again); when every
 *   connection has a request under way, the new one is answered 503 and
 *   closed;
 * - **timeouts**: the request head must arrive within `headerTimeoutMs` of
 *   the connection (or of the first byte of a later request, acting only once
 *   the answer ahead of it is written: answers stay in order); a connection
 *   without a request is closed after `idleTimeoutMs`; a body must keep
 *   arriving (`idleTimeoutMs` between reads) and be complete within
 *   `requestTimeoutMs`; an answer the client does not read is abandoned
 *   after `idleTimeoutMs` (a sweep checks the deadlines every quarter of the
 *   shortest timeout, 50 ms to 1 s, and may act up to two sweeps late, never
 *   early);
 * - **accept errors** (descriptors exhausted, ...) never end the server: it
 *   closes the oldest idle connection, backs off (10 ms doubling to 1 s) and
 *   accepts again.
 *
 * Each request is handed to the handler as a web `Request` whose body is read
 * from the connection only as the handler pulls it (`http_body.ts`).
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { ApiError, errorResponse } from "./errors.ts";
import { HeadParser, type RequestHead } from "./http_parse.ts";
import { ConnReader } from "./http_reader.ts";
import { type BodyState, requestBody } from "./http_body.ts";
import {
  type ByteWriter,
  cannedResponse,
  type RawAnswer,
  writeAll,
  type WriteOptions,
  writeRaw,
  writeResponse,
} from "./http_write.ts";

/** Why a connection was closed (the label of `edged_http_connections_closed_total`). */
export type CloseReason =
  | "done"
  | "header_timeout"
  | "idle_timeout"
  | "body_timeout"
  | "write_timeout"
  | "evicted"
  | "refused"
  | "bad_request"
  | "shutdown"
  | "error";

/** Every close reason, for metrics. */
export const CLOSE_REASONS: readonly CloseReason[] = [
  "done",
  "header_timeout",
  "idle_timeout",
  "body_timeout",
  "write_timeout",
  "evicted",
  "refused",
  "bad_request",
  "shutdown",
  "error",
];

/** A request handler; `info` says who is asking. */
export type HttpHandler = (
  req: Request,
  info: { remoteAddr: Deno.NetAddr },
) => Response | Promise<Response>;

/**
 * The fast path for hot routes: offered each request whose whole body came
 * with its head (and whose Host makes a valid URL) before a web `Request` is
 * built, it answers without `Request` and `Response` objects, whose cost is
 * most of a small request's. It returns undefined, having done nothing, for
 * every request it does not take; that request goes to the handler. `body`
 * is a view into the connection's buffer: read it before returning.
 */
export type FastHandler = (
  head: RequestHead,
  body: Uint8Array | null,
) => Promise<RawAnswer> | undefined;

/** Options of {@linkcode serveHttp}. */
export interface HttpServerOptions {
  hostname: string;
  port: number;
  /** Open connections at most (see the module comment for what happens at the cap). */
  maxConnections: number;
  /** Time for a request head to arrive, in ms. */
  headerTimeoutMs: number;
  /** Time a connection may sit without a request, or a body or an answer without progress, in ms. */
  idleTimeoutMs: number;
  /** Time for a whole request, body included, to arrive, in ms. */
  requestTimeoutMs: number;
  /** Longest request head in bytes (431 beyond). @default {32768} */
  maxHeadBytes?: number;
  /** Answers the requests it takes before `handler` sees them (see {@linkcode FastHandler}). */
  fast?: FastHandler;
  /** Called once listening. */
  onListen?: (addr: Deno.NetAddr) => void;
  /** The handler threw instead of answering (answered 500). */
  onError?: (err: unknown) => void;
  /** `accept` failed; the server waits `delayMs` and tries again. */
  onAcceptError?: (err: Error, delayMs: number) => void;
}

/** Counters of {@linkcode HttpServer}. */
export interface HttpServerStats {
  /** Connections accepted. */
  accepted: number;
  /** Connections closed, by reason. */
  closed: Record<CloseReason, number>;
  /** `accept` calls that failed. */
  acceptErrors: number;
  /** Of those, connections reset by their client before they were accepted (no back-off). */
  goneBeforeAccept: number;
}

/** What `accept` throws for a connection its client reset while it waited to be accepted. */
const GONE_BEFORE_ACCEPT = [
  Deno.errors.NotConnected,
  Deno.errors.ConnectionAborted,
  Deno.errors.ConnectionReset,
];

/** A running server. */
export interface HttpServer {
  /** Where it listens. */
  readonly addr: Deno.NetAddr;
  /** Open connections. */
  readonly connections: number;
  /** The cap in force. */
  readonly maxConnections: number;
  readonly stats: HttpServerStats;
  /**
   * Stops accepting, closes connections without a request under way, lets
   * the requests under way be answered, and resolves when every connection
   * is closed.
   */
  shutdown(): Promise<void>;
}

type Phase = "head" | "idle" | "request" | "linger" | "waiting";

/** Longest time and most bytes read and dropped after an answer that left a body unread. */
const LINGER_MS = 1000;
const LINGER_BYTES = 1024 * 1024;

/**
 * One open connection and its clock. Deadlines armed per request cost no
 * clock read: the sweeper stamps them on its first pass after they were
 * armed, so one fires between its time and that plus two sweeper ticks
 * after it was armed, never before.
 */
class Connection {
  readonly conn: Deno.TcpConn;
  phase: Phase = "head";
  /** When the pending read fails (performance.now() ms), and as what. */
  deadline = Infinity;
  /** A deadline this many ms after the next sweep, when above 0 (see the class comment). */
  armedMs = 0;
  deadlineReason: CloseReason = "header_timeout";
  /**
   * A write is under way since: -1 none, 0 not yet seen by the sweeper, else
   * when it saw it. One clock for the connection: its writes never overlap
   * (each waits for the one before), so it always belongs to the write going out.
   */
  writeSince = -1;
  /** An answer was handed to the writer and is not all written yet. */
  answering = false;
  /** Neighbours in the server's list of evictable connections (phase other than "request"). */
  prev: Connection | null = null;
  next: Connection | null = null;
  listed = false;
  /** Whether any byte of the current head has arrived. */
  headStarted = false;
  closed = false;
  reason: CloseReason = "done";

  #onClose: (reason: CloseReason) => void;

  constructor(conn: Deno.TcpConn, onClose: (reason: CloseReason) => void) {
    this.conn = conn;
    this.#onClose = onClose;
  }

  /** The pending read fails `ms` after now (give or take the sweeper's stamping), as `reason`. */
  arm(ms: number, reason: CloseReason): void {
    this.deadline = Infinity;
    this.armedMs = ms;
    this.deadlineReason = reason;
  }

  /** The pending read fails at `at` (performance.now() ms), or never. */
  setDeadline(at: number): void {
    this.deadline = at;
    this.armedMs = 0;
  }

  close(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.reason = reason;
    this.#onClose(reason);
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

/** Whether `a` and `b` hold the same bytes. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The eight ways to write an answer, made once. */
const WRITE_OPTIONS: WriteOptions[] = [];
for (const version of ["1.0", "1.1"] as const) {
  for (const close of [false, true]) {
    for (const headOnly of [false, true]) WRITE_OPTIONS.push({ headOnly, close, version });
  }
}
function writeOptions(headOnly: boolean, close: boolean, version: "1.0" | "1.1"): WriteOptions {
  return WRITE_OPTIONS[(version === "1.1" ? 4 : 0) + (close ? 2 : 0) + (headOnly ? 1 : 0)];
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Starts the server; rejects when it cannot listen.
 *
 * @example
 * ```ts ignore
 * const server = serveHttp({ hostname: "127.0.0.1", port: 0, maxConnections: 64,
 *   headerTimeoutMs: 10_000, idleTimeoutMs: 30_000, requestTimeoutMs: 300_000 },
 *   () => new Response("ok"));
 * await server.shutdown();
 * ```
 */
export function serveHttp(o: HttpServerOptions, handler: HttpHandler): HttpServer {
  if (!(o.maxConnections >= 1)) {
    throw new RangeError(`maxConnections must be at least 1, got ${o.maxConnections}`);
  }
  const maxHead = o.maxHeadBytes ?? 32768;
  const listener = Deno.listen({ hostname: o.hostname, port: o.port, transport: "tcp" });
  const addr = listener.addr;
  const live = new Set<Connection>();
  // The connections without a request under way, in the order they got
  // there: the first has waited longest. A linked list through the
  // connections, as a connection enters and leaves it twice per request.
  let first: Connection | null = null;
  let lastListed: Connection | null = null;
  const unlist = (c: Connection) => {
    if (!c.listed) return;
    c.listed = false;
    if (c.prev) c.prev.next = c.next;
    else first = c.next;
    if (c.next) c.next.prev = c.prev;
    else lastListed = c.prev;
    c.prev = c.next = null;
  };
  const stats: HttpServerStats = {
    accepted: 0,
    closed: Object.fromEntries(CLOSE_REASONS.map((r) => [r, 0])) as Record<CloseReason, number>,
    acceptErrors: 0,
    goneBeforeAccept: 0,
  };
  let stopping = false;
  const drained = Promise.withResolvers<void>();

  /** Enters `phase`: every phase but "request" lists the connection as evictable, at the end. */
  const setPhase = (c: Connection, phase: Phase) => {
    c.phase = phase;
    unlist(c);
    if (phase === "request") return;
    c.listed = true;
    c.prev = lastListed;
    if (lastListed) lastListed.next = c;
    else first = c;
    lastListed = c;
  };

  /** Closes the connection that has waited longest without a request under way. */
  const evictOne = (): boolean => {
    const c = first;
    if (c === null) return false;
    c.close("evicted");
    unlist(c);
    return true;
  };

  const tick = Math.max(50, Math.min(1000, o.headerTimeoutMs / 4, o.idleTimeoutMs / 4));
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const c of live) {
      if (c.armedMs > 0) {
        c.deadline = now + c.armedMs;
        c.armedMs = 0;
      }
      if (c.writeSince === 0) c.writeSince = now;
      if (c.writeSince > 0 && now - c.writeSince > o.idleTimeoutMs) c.close("write_timeout");
      // An answer still going out is not idleness: its own deadline counts. Nor
      // does a head's deadline act before the answer ahead of it is out: its
      // 408 must follow that answer, not land inside it.
      else if (
        c.deadline < now &&
        !(c.phase === "idle" && c.writeSince >= 0) && !(c.phase === "head" && c.answering)
      ) expire(c);
    }
  }, tick);
  Deno.unrefTimer(sweeper);

  /** A deadline passed: say 408 if a request had begun, and close. */
  const expire = (c: Connection) => {
    const reason = c.deadlineReason;
    if (reason === "header_timeout" && c.headStarted) {
      const { status, body, headers } = errorResponse(
        new ApiError(408, "request_timeout", "the request head did not arrive in time"),
      );
      // Best effort: the socket's buffer takes this at once or not at all.
      c.conn.write(cannedResponse(status, JSON.stringify(body), {
        ...headers,
        "content-type": "application/json",
      })).catch(() => {}).finally(() => c.close(reason));
      c.setDeadline(Infinity);
      return;
    }
    c.close(reason);
  };

  /** Writes to `c`, failing it when a write makes no progress for `idleTimeoutMs` (see the sweeper). */
  const writer = (c: Connection): ByteWriter => {
    const done = (n: number) => {
      c.writeSince = -1;
      return n;
    };
    const failed = (err: unknown) => {
      c.writeSince = -1;
      throw err;
    };
    const w: ByteWriter = {
      write(p: Uint8Array): Promise<number> {
        c.writeSince = 0;
        return c.conn.write(p).then(done, failed);
      },
      writeAll(p: Uint8Array): Promise<void> {
        c.writeSince = 0;
        return c.conn.write(p).then((n) => {
          if (n < p.length) return w.writeAll!(p.subarray(n));
          c.writeSince = -1;
        }, failed);
      },
    };
    return w;
  };

  /** Reads up to the end of a head; null when the client closed between requests. */
  const readHead = async (c: Connection, reader: ConnReader): Promise<Uint8Array | null> => {
    let searched = 0;
    for (;;) {
      // Empty lines before a request line are ignored (RFC 9112 §2.2), also split across reads.
      searched = Math.max(0, searched - reader.skipEmptyLines());
      if (reader.buffered > 0 && !c.headStarted) {
        c.headStarted = true;
        if (c.phase === "idle") {
          setPhase(c, "head");
          c.arm(o.headerTimeoutMs, "header_timeout");
        }
      }
      const head = reader.takeHead(searched);
      if (head) return head;
      if (reader.full) {
        throw new ApiError(431, "header_fields_too_large", `request head over ${maxHead} bytes`);
      }
      searched = reader.buffered;
      if (!await reader.fill()) {
        if (reader.buffered > 0) throw new ApiError(400, "bad_request", "incomplete request head");
        return null;
      }
    }
  };

  /** Writes a refusal, stops writing, and reads (and drops) what the client still sends. */
  const refuse = async (c: Connection, err: unknown, reader: ConnReader) => {
    const { status, body, headers } = errorResponse(err);
    await writeAll(
      writer(c),
      cannedResponse(status, JSON.stringify(body), {
        ...headers,
        "content-type": "application/json",
      }),
    );
    await linger(c, reader);
  };

  /** After a last answer that left bytes unread: half-close, drain briefly, so the client reads the answer rather than a reset. */
  const linger = async (c: Connection, reader: ConnReader) => {
    setPhase(c, "linger");
    c.arm(LINGER_MS, "done");
    try {
      await c.conn.closeWrite();
      let dropped = 0;
      while (dropped < LINGER_BYTES) {
        const chunk = await reader.readChunk(65536);
        if (chunk === null) break;
        dropped += chunk.length;
      }
    } catch { /* closed by the deadline or the peer */ }
  };

  const toRequest = (
    head: RequestHead,
    body: ReadableStream<Uint8Array> | Uint8Array | null,
  ): Request => {
    const url = head.target.startsWith("/")
      ? `http://${
        head.host || (addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname)
      }${head.target}`
      : head.target;
    try {
      return new Request(url, {
        method: head.method,
        headers: head.headers,
        body: head.method === "GET" || head.method === "HEAD" ? null : body as BodyInit | null,
        // @ts-ignore: duplex is required for stream bodies (fetch spec), not yet in lib.dom
        duplex: "half",
      });
    } catch (err) {
      throw new ApiError(400, "bad_request", `malformed request: ${(err as Error).message}`, {
        cause: err,
      });
    }
  };

  // Hosts seen to make a valid URL: a client sends the same one every time.
  const goodHosts = new Set<string>();
  /** Whether `toRequest` would build a Request of `head` (the fast path takes no other). */
  const makesUrl = (head: RequestHead): boolean => {
    if (!head.target.startsWith("/")) return false;
    const host = head.host;
    if (!host || goodHosts.has(host)) return true;
    if (!URL.canParse(`http://${host}/`)) return false;
    if (goodHosts.size >= 64) goodHosts.clear();
    goodHosts.add(host);
    return true;
  };

  const heads = new HeadParser();

  const serveConnection = async (c: Connection) => {
    const reader = new ConnReader(c.conn, maxHead);
    const w = writer(c);
    // The answer still going out, if any (an answer waits for the one before).
    let writing: Promise<void> | null = null;
    // Its reactions, registered as it starts: before any later wait for it.
    const written = () => {
      writing = null;
      c.answering = false;
    };
    const writeFailed = () => c.close("error");
    // The last head's bytes (a copy) and what they parsed to, when shared: a
    // client sends the same head again and again, and comparing bytes costs
    // less than decoding them to look the head up.
    let lastBytes: Uint8Array | null = null;
    let lastHead: RequestHead | null = null;
    // The request under way, for the body's hooks (made once per connection).
    let head: RequestHead;
    let requestDeadline = 0;
    const hooks = {
      beforeFirstRead: async () => {
        if (!head.expectContinue) return;
        // An interim answer keeps the order of answers too (RFC 9112 section
        // 9.3.2): written during the answer ahead, it would land inside it and
        // take over the write clock that answer's stalled write runs on.
        if (writing !== null) await writing;
        await writeAll(w, CONTINUE);
      },
      reading: (active: boolean) => {
        if (!active) {
          c.setDeadline(Infinity);
          return;
        }
        c.deadlineReason = "body_timeout";
        c.setDeadline(Math.min(requestDeadline, performance.now() + o.idleTimeoutMs));
      },
    };
    setPhase(c, "head");
    c.arm(o.headerTimeoutMs, "header_timeout");
    try {
      for (;;) {
        try {
          const bytes = await readHead(c, reader);
          if (bytes === null) {
            // The client has sent all it will (a half-close): what it asked still goes out whole.
            if (writing !== null) await writing;
            break;
          }
          if (lastHead !== null && sameBytes(bytes, lastBytes!)) head = lastHead;
          else {
            head = heads.parse(bytes);
            if (Object.isFrozen(head)) {
              lastBytes = bytes.slice();
              lastHead = head;
            }
          }
        } catch (err) {
          if (c.closed || !(err instanceof ApiError)) break;
          if (writing !== null) {
            // Answers go out in order (RFC 9112 section 9.3.2): the one ahead
            // first, whole. Nothing more is read meanwhile, and the head's
            // clock stops: that answer's write clock bounds the wait.
            c.setDeadline(Infinity);
            setPhase(c, "waiting");
            await writing;
            if (c.closed) break;
          }
          await refuse(c, err, reader);
          c.close("bad_request");
          break;
        }
        setPhase(c, "request");
        c.setDeadline(Infinity);
        const state: BodyState = { done: false, error: undefined };
        const body = requestBody(reader, head, state, hooks);
        // Read only for a body that is not here yet (a stream): most requests need no clock.
        if (body instanceof ReadableStream) {
          requestDeadline = performance.now() + o.requestTimeoutMs;
        }
        let res: Response | RawAnswer;
        try {
          const fast = o.fast && !(body instanceof ReadableStream) && makesUrl(head)
            ? o.fast(head, body)
            : undefined;
          res = fast ? await fast : await handler(
            // A body read whole is a view into the buffer: the Request gets its own copy.
            toRequest(head, body instanceof Uint8Array ? body.slice() : body),
            { remoteAddr: c.conn.remoteAddr },
          );
        } catch (err) {
          if (!(err instanceof ApiError)) o.onError?.(err);
          const { status, body, headers } = errorResponse(err);
          res = Response.json(body, { status, headers });
        }
        if (c.closed) break;
        if (state.error instanceof ApiError) {
          // The body itself failed (malformed chunking): that is the answer.
          if (res instanceof Response) await res.body?.cancel();
          const { status, body, headers } = errorResponse(state.error);
          res = Response.json(body, { status, headers });
        } else if (state.error !== undefined) {
          break; // the connection failed under the body
        }
        const keep = head.keepAlive && state.done && !stopping;
        // The answer goes out while the connection already waits for the next
        // request: one turn of the event loop less per request. Answers stay
        // in order: each waits for the one before. Meanwhile the connection
        // holds only answers its client has not read: at the cap, another
        // client may take its place, as it may an idle connection's.
        if (writing !== null) {
          setPhase(c, "waiting");
          await writing;
          if (c.closed) break;
        }
        const how = writeOptions(head.method === "HEAD", !keep, head.version);
        const sent = res instanceof Response ? writeResponse(w, res, how) : writeRaw(w, res, how);
        if (keep) {
          writing = sent;
          c.answering = true;
          sent.then(written, writeFailed);
        } else {
          await sent;
          if (!state.done) await linger(c, reader);
          c.close(stopping ? "shutdown" : "done");
          break;
        }
        c.headStarted = false;
        setPhase(c, "idle");
        c.arm(o.idleTimeoutMs, "idle_timeout");
      }
    } catch {
      // The peer reset, a deadline closed it, or the server is stopping.
    } finally {
      c.close("done");
      live.delete(c);
      unlist(c);
      if (stopping && live.size === 0) drained.resolve();
    }
  };

  const refuseAtCap = (conn: Deno.TcpConn) => {
    stats.closed.refused++;
    const { status, body, headers } = errorResponse(
      new ApiError(503, "too_many_connections", "too many open connections; try again", {
        headers: { "retry-after": "1" },
      }),
    );
    const bytes = cannedResponse(status, JSON.stringify(body), {
      ...headers,
      "content-type": "application/json",
    });
    const t = setTimeout(() => close(), 1000);
    const close = () => {
      clearTimeout(t);
      try {
        conn.close();
      } catch { /* closed */ }
    };
    conn.write(bytes).catch(() => {}).finally(close);
  };

  const acceptLoop = async () => {
    let delay = 0;
    let yieldToIo = false;
    while (!stopping) {
      if (yieldToIo) {
        yieldToIo = false;
        await new Promise((r) => setImmediate(r));
      }
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept() as Deno.TcpConn;
        delay = 0;
      } catch (err) {
        if (stopping || err instanceof Deno.errors.BadResource) break;
        // A connection reset while it waited in the listen queue (ENOTCONN,
        // ECONNABORTED): that one is gone, the next is accepted at once. Cheap
        // for anyone to cause, so it must cost no wait and no other client.
        if (GONE_BEFORE_ACCEPT.some((e) => err instanceof e)) {
          stats.acceptErrors++;
          stats.goneBeforeAccept++;
          continue;
        }
        // Out of descriptors (EMFILE, ENFILE) or buffers: free one by closing
        // the connection idle longest, wait, and accept again; the kernel
        // keeps the waiting connections in the listen queue meanwhile.
        stats.acceptErrors++;
        evictOne();
        delay = Math.min(1000, Math.max(10, delay * 2));
        o.onAcceptError?.(err as Error, delay);
        await sleep(delay);
        continue;
      }
      stats.accepted++;
      if (live.size >= o.maxConnections) {
        if (!evictOne()) {
          refuseAtCap(conn);
          continue;
        }
        // A flood fills the listen queue, and accepts that complete at once
        // could replace a prompt client whose request has arrived but is not
        // read yet: let the event loop read before accepting again.
        yieldToIo = true;
      }
      try {
        conn.setNoDelay(true);
      } catch { /* closed already */ }
      const c = new Connection(conn, (reason) => stats.closed[reason]++);
      live.add(c);
      void serveConnection(c);
    }
  };

  o.onListen?.(addr);
  const accepting = acceptLoop();

  return {
    addr,
    get connections() {
      return live.size;
    },
    maxConnections: o.maxConnections,
    stats,
    async shutdown() {
      if (!stopping) {
        stopping = true;
        try {
          listener.close();
        } catch { /* closed */ }
        // A connection waiting for its client to read the answer ahead still has answers to give.
        for (const c of live) {
          if (c.phase !== "request" && c.phase !== "waiting") c.close("shutdown");
        }
      }
      await accepting;
      if (live.size > 0) await drained.promise;
      clearInterval(sweeper);
    },
  };
}

const CONTINUE = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");
