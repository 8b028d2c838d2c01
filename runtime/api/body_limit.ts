/**
 * Streaming request body limits. The application applies a default to every
 * request ({@linkcode defaultBodyLimit}); a route that takes more or less says
 * so with {@linkcode bodyLimit} before it reads. Either way the body is
 * counted as it streams in, chunked or not, and reading fails with a 413 once
 * it passes the limit, so a refused upload costs at most the limit in memory
 * (unlike Hono's `bodyLimit`, which buffers, and `formData()`/`json()` on an
 * unbounded body). A `Content-Length` over the limit is refused before a byte
 * is read.
 *
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import { EdgedError } from "../../lib/mod.ts";

/** A request body over its route's limit. */
export class BodyTooLargeError extends EdgedError {
  override readonly code = "body_too_large";
  override readonly status = 413;
  /** Builds the error for a body over `limit` bytes. */
  constructor(limit: number) {
    super(`request body exceeds ${limit} bytes`, { field: "body" });
  }
}

/** The limit in force for one request and what it has read so far. */
interface Meter {
  limit: number;
  received: number;
  exceeded: boolean;
}

const meters = new WeakMap<Context, Meter>();

function declaredLength(c: Context): number | null {
  const v = c.req.header("content-length");
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : null;
}

/**
 * Replaces the request's body with one that counts against `meter`, reading
 * the original only when pulled (a declared length over the limit, or a
 * handler that answers without reading, costs no read at all).
 */
function meterBody(c: Context, meter: Meter): void {
  const raw = c.req.raw;
  if (!raw.body) return;
  // The HTTP server delivers exactly Content-Length bytes (RFC 9112 section
  // 6.2), so a declared length within the limit needs no counting.
  const declared = declaredLength(c);
  if (declared !== null && declared <= meter.limit) return;
  const reader = raw.body.getReader();
  const counted = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await reader.read();
      if (done) return controller.close();
      meter.received += value.length;
      if (meter.received > meter.limit) {
        meter.exceeded = true;
        const err = new BodyTooLargeError(meter.limit);
        controller.error(err);
        await reader.cancel(err).catch(() => {});
        return;
      }
      controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
  c.req.raw = new Request(raw, {
    body: counted,
    // @ts-ignore: duplex is required for stream bodies (fetch spec), not yet in lib.dom
    duplex: "half",
  });
}

/**
 * Runs the handlers and, if the body passed its limit, answers 413 whatever
 * they made of the failed read (a parser may have called it malformed).
 */
async function enforce(meter: Meter, next: () => Promise<void>): Promise<void> {
  try {
    await next();
  } catch (err) {
    if (meter.exceeded) throw new BodyTooLargeError(meter.limit);
    throw err;
  }
  if (meter.exceeded) throw new BodyTooLargeError(meter.limit);
}

/**
 * Middleware for the whole application: every request body is limited to
 * `maxBytes` unless its route sets its own limit with {@linkcode bodyLimit}.
 */
export function defaultBodyLimit(maxBytes: number): MiddlewareHandler {
  return async (c, next) => {
    if (!c.req.raw.body) return await next();
    const meter: Meter = { limit: maxBytes, received: 0, exceeded: false };
    meters.set(c, meter);
    meterBody(c, meter);
    await enforce(meter, next);
  };
}

/**
 * Middleware for one route: its body may be up to `maxBytes`. A declared
 * length over it is refused at once.
 *
 * @example
 * ```ts ignore
 * app.put("/:name", bodyLimit(33 * 1024 * 1024), async (c) => c.req.formData());
 * ```
 */
export function bodyLimit(maxBytes: number): MiddlewareHandler {
  return async (c, next) => {
    const declared = declaredLength(c);
    if (declared !== null && declared > maxBytes) throw new BodyTooLargeError(maxBytes);
    const meter = meters.get(c);
    if (meter) {
      if (meter.received > 0) throw new TypeError("bodyLimit must run before the body is read");
      meter.limit = maxBytes;
      return await next();
    }
    // Not behind defaultBodyLimit (a sub-app on its own, in a test): meter here.
    if (!c.req.raw.body) return await next();
    const own: Meter = { limit: maxBytes, received: 0, exceeded: false };
    meters.set(c, own);
    meterBody(c, own);
    await enforce(own, next);
  };
}
