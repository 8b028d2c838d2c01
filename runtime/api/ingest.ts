/**
 * `POST /api/v1/data`: validate, make durable, then answer 202. Two doors to
 * the same steps: the Hono route, which answers every request (and every
 * refusal), and {@linkcode ingestFastRoute}, which the server offers the
 * requests that arrive whole and takes only those that pass every check; any
 * other it leaves, untouched, to the route.
 *
 * @module
 */
import { Hono } from "hono";
import { clockIsSet } from "../../lib/mod.ts";
import { bodyLimit } from "./body_limit.ts";
import { OutboxFullError, type Reading, type ReadingLog } from "../readings.ts";
import type { Counter } from "../metrics.ts";
import { ApiError } from "./errors.ts";
import { parseReadings, type ReadingRules } from "./readings_schema.ts";
import { fieldValue, type RequestHead } from "./http_parse.ts";
import type { RawAnswer } from "./http_write.ts";
import type { FastRoute } from "./server.ts";

/** What the ingest route needs. */
export interface IngestOptions {
  log: ReadingLog;
  bodyLimitBytes: number;
  maxBatch: number;
  maxFutureSkewMs: number;
  /** Counts readings by outcome (`accepted`, `rejected`, `full`). */
  readingsCounter: Counter;
}

const JSON_TYPE = /^application\/json\s*(;|$)/i;

/**
 * Appends valid readings of `opts`: resolves with how many once durable,
 * counting the outcome.
 */
function acceptor(opts: IngestOptions): (readings: Reading[]) => Promise<number> {
  const accepted = opts.readingsCounter.series({ outcome: "accepted" });
  const full = opts.readingsCounter.series({ outcome: "full" });
  return async (readings) => {
    try {
      await opts.log.append(readings);
    } catch (err) {
      if (err instanceof OutboxFullError) full(readings.length);
      throw err;
    }
    accepted(readings.length);
    return readings.length;
  };
}

/**
 * A system clock that reads before `CLOCK_SET_AFTER_MS` (lib/clock.ts), or
 * before the newest reading edged received, is not set (a gateway without a
 * real-time clock, before NTP answers): it cannot tell a timestamp from the
 * future then.
 */
function rules(opts: IngestOptions): ReadingRules {
  const now = Date.now();
  const set = clockIsSet(now) && now >= opts.log.lastReceivedMs;
  // Readings whose timestamps lie ahead of an unset clock are kept, as sent.
  return { maxBatch: opts.maxBatch, maxFutureMs: set ? opts.maxFutureSkewMs : Infinity, now };
}

/** The ingest sub-app, mounted at /api/v1/data. */
export function ingestRoutes(opts: IngestOptions): Hono {
  const accept = acceptor(opts);
  const app = new Hono();
  app.post(
    "/",
    (c, next) => {
      const type = c.req.header("content-type") ?? "";
      if (!JSON_TYPE.test(type)) {
        throw new ApiError(
          400,
          "invalid_content_type",
          `Content-Type must be application/json, got ${JSON.stringify(type || "(none)")}`,
          { field: "content-type" },
        );
      }
      return next();
    },
    bodyLimit(opts.bodyLimitBytes),
    async (c) => {
      const text = await c.req.text();
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (err) {
        opts.readingsCounter.inc({ outcome: "rejected" });
        throw new ApiError(
          400,
          "invalid_json",
          `body is not valid JSON: ${(err as Error).message}`,
          {
            field: "body",
            cause: err,
          },
        );
      }
      let readings;
      try {
        readings = parseReadings(body, rules(opts));
      } catch (err) {
        opts.readingsCounter.inc({ outcome: "rejected" }, Array.isArray(body) ? body.length : 1);
        throw err;
      }
      return c.json({ accepted: await accept(readings) }, 202);
    },
  );
  return app;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const JSON_FIELDS = [["content-type", "application/json"]] as const;

/**
 * `POST path` on the server's fast path: a body that arrived whole, of
 * JSON type, within the limit, that parses and validates, is appended and
 * answered as the route would; any other request is left to the route (which
 * finds the same fault and answers it), with nothing counted or stored.
 */
export function ingestFastRoute(path: string, opts: IngestOptions): FastRoute {
  const accepted = opts.readingsCounter.series({ outcome: "accepted" });
  const full = opts.readingsCounter.series({ outcome: "full" });
  // The answer by count of readings (at most maxBatch of them), built once.
  const answers: RawAnswer[] = [];
  const answer = (n: number): RawAnswer =>
    answers[n] ??= {
      status: 202,
      headers: JSON_FIELDS,
      body: encoder.encode(JSON.stringify({ accepted: n })),
    };
  const one = answer(1);
  const acceptedOne = () => {
    accepted(1);
    return one;
  };
  // Shared heads (frozen, see HeadParser) seen to be of JSON type.
  const jsonHeads = new WeakSet<RequestHead>();
  const isJson = (head: RequestHead) => {
    if (jsonHeads.has(head)) return true;
    if (!JSON_TYPE.test(fieldValue(head, "content-type") ?? "")) return false;
    if (Object.isFrozen(head)) jsonHeads.add(head);
    return true;
  };
  return {
    method: "POST",
    path,
    handle(head, body) {
      if (body === null || body.length > opts.bodyLimitBytes) return undefined;
      if (!isJson(head)) return undefined;
      let readings: Reading[];
      try {
        // TextDecoder as Request.text() decodes: UTF-8, a BOM dropped, bad bytes replaced.
        readings = parseReadings(JSON.parse(decoder.decode(body)), rules(opts));
      } catch {
        return undefined;
      }
      // As the route's acceptor does, without its async frame: count, then answer.
      let durable: Promise<unknown>;
      try {
        durable = opts.log.append(readings);
      } catch (err) {
        if (err instanceof OutboxFullError) full(readings.length);
        return Promise.reject(err);
      }
      const n = readings.length;
      return durable.then(
        n === 1 ? acceptedOne : () => {
          accepted(n);
          return answer(n);
        },
      );
    },
  };
}
