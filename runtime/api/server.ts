/**
 * The HTTP API application: operational endpoints, bearer-protected
 * /api/v1/, component sub-apps, one error shape for every failure.
 *
 * @module
 */
import { Hono } from "hono";
import { routePath } from "hono/route";
import { getLogger } from "@logtape/logtape";
import { type Metrics, METRICS_CONTENT_TYPE } from "../metrics.ts";
import { bearerAuth } from "./auth.ts";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { EdgedError } from "../../lib/mod.ts";
import { errorResponse } from "./errors.ts";
import { defaultBodyLimit } from "./body_limit.ts";

const log = getLogger(["edged", "http"]);

/** A sub-app mounted at `path` (paths under /api/v1/ are bearer-protected). */
export interface Route {
  path: string;
  app: Hono;
}

/** What the application is built from. */
export interface ServerOptions {
  token: string;
  metrics: Metrics;
  /** Reasons the process is not ready; empty means ready. */
  notReady: () => string[];
  /** Sub-apps, e.g. `/api/v1/data`, `/api/v1/modules`. */
  routes: Route[];
  /** The page served at `/`. */
  dashboard: () => Response | Promise<Response>;
  /** Largest request body of a route that sets no limit of its own (`bodyLimit`). */
  bodyLimitBytes: number;
}

/** Builds the Hono application. */
export function createApp(opts: ServerOptions): Hono {
  const app = new Hono();
  const requests = opts.metrics.counter(
    "edged_http_requests_total",
    "HTTP requests answered, by route pattern, method and status.",
    ["route", "method", "status"],
  );
  const latency = opts.metrics.histogram(
    "edged_http_request_duration_seconds",
    "Time to answer HTTP requests, by route pattern.",
    undefined,
    ["route"],
  );

  app.use(async (c, next) => {
    const start = performance.now();
    await next();
    // The last matched pattern; unmatched paths share one series, so scanners
    // cannot blow up the label cardinality.
    const pattern = routePath(c, -1);
    const route = pattern === "*" || pattern === "/*" ? "unmatched" : pattern;
    requests.inc({ route, method: c.req.method, status: String(c.res.status) });
    latency.observe((performance.now() - start) / 1000, { route });
  });
  app.use(defaultBodyLimit(opts.bodyLimitBytes));

  // The one place an HTTP request's failure becomes an answer: sub-apps have
  // no error handlers of their own, so whatever they throw ends up here.
  app.onError((err, c) => {
    const { status, body, headers } = errorResponse(err);
    if (status >= 500 && !(err instanceof EdgedError)) {
      log.error("unhandled error on {method} {path}: {error}", {
        method: c.req.method,
        path: c.req.path,
        error: String(err instanceof Error ? err.stack ?? err.message : err),
      });
    }
    for (const [k, v] of Object.entries(headers)) c.header(k, v);
    return c.json(body, status as ContentfulStatusCode);
  });

  app.notFound((c) =>
    c.json(
      { error: { code: "not_found", message: `no route for ${c.req.method} ${c.req.path}` } },
      404,
    )
  );

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", (c) => {
    const reasons = opts.notReady();
    return reasons.length === 0
      ? c.json({ status: "ready" })
      : c.json({ status: "not_ready", reasons }, 503);
  });
  app.get("/metrics", (c) => {
    return c.body(opts.metrics.render(), 200, { "Content-Type": METRICS_CONTENT_TYPE });
  });
  app.get("/", () => opts.dashboard());

  app.use("/api/v1/*", bearerAuth(opts.token));
  for (const r of opts.routes) app.route(r.path, r.app);
  return app;
}
