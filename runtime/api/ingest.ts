/**
 * `POST /api/v1/data`: validate, make durable, then answer 202.
 *
 * @module
 */
import { Hono } from "hono";
import { bodyLimit } from "./body_limit.ts";
import { OutboxFullError, type ReadingLog } from "../readings.ts";
import type { Counter } from "../metrics.ts";
import { ApiError } from "./errors.ts";
import { parseReadings } from "./readings_schema.ts";

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

/** The ingest sub-app, mounted at /api/v1/data. */
export function ingestRoutes(opts: IngestOptions): Hono {
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
        readings = parseReadings(body, {
          maxBatch: opts.maxBatch,
          maxFutureMs: opts.maxFutureSkewMs,
          now: Date.now(),
        });
      } catch (err) {
        opts.readingsCounter.inc({ outcome: "rejected" }, Array.isArray(body) ? body.length : 1);
        throw err;
      }
      try {
        await opts.log.append(readings);
      } catch (err) {
        if (err instanceof OutboxFullError) {
          opts.readingsCounter.inc({ outcome: "full" }, readings.length);
        }
        throw err;
      }
      opts.readingsCounter.inc({ outcome: "accepted" }, readings.length);
      return c.json({ accepted: readings.length }, 202);
    },
  );
  return app;
}
