/**
 * The HTTP API application: operational endpoints, bearer-protected
 * /api/v1/, component sub-apps, one error shape for every failure.
 *
 * @module
 */
import { Hono } from "hono";
import { routePath } from "hono/route";
import { type Metrics, METRICS_CONTENT_TYPE } from "../metrics.ts";
import { bearerAuth, bearerMatcher } from "./auth.ts";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { EdgedError, getLogger, storageError } from "../../lib/mod.ts";
import { errorResponse } from "./errors.ts";
import { defaultBodyLimit } from "./body_limit.ts";
import { fieldValue, type RequestHead } from "./http_parse.ts";
import type { RawAnswer } from "./http_write.ts";
import type { FastHandler } from "./http_server.ts";

const log = getLogger(["edged", "http"]);

/** A sub-app mounted at `path` (paths under /api/v1/ are bearer-protected). */
export interface Route {
  path: string;
  app: Hono;
}

/**
 * A route the server answers on its fast path (`FastHandler`) as well: the
 * same requests the application would route to it, by exact method and
 * target, behind the same bearer check under /api/v1/.
 */
export interface FastRoute {
  method: string;
  /** The whole request target (no query), as the application's route pattern names it. */
  path: string;
  /**
   * Answers the request, or returns undefined having done nothing (the
   * application then answers it). A rejection is answered as the
   * application answers a thrown error.
   */
  handle(head: RequestHead, body: Uint8Array | null): Promise<RawAnswer> | undefined;
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
  /** Routes also answered on the server's fast path (each must be one of `routes` too). */
  fastRoutes?: FastRoute[];
}

/** The application and its fast path, sharing their metrics. */
export interface Api {
  app: Hono;
  /** For `serveHttp`'s `fast` option. */
  fast: FastHandler;
}

/** Methods counted under their own name; any other token a client sends counts as "other". */
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]);

/** The method as a metrics label: one of a fixed few, so clients cannot add series. */
function methodLabel(method: string): string {
  return METHODS.has(method) ? method : "other";
}

/**
 * The one place a failure becomes an answer (for the application's
 * `onError` and the fast path): an unexpected 5xx is logged.
 */
function renderError(thrown: unknown, method: string, path: string) {
  const err = storageError(thrown);
  const answer = errorResponse(err);
  if (answer.status >= 500 && !(err instanceof EdgedError)) {
    log.error("unhandled error on {method} {path}: {error}", {
      method,
      path,
      error: String(err instanceof Error ? err.stack ?? err.message : err),
    });
  }
  return answer;
}

/** Builds the Hono application. */
export function createApp(opts: ServerOptions): Hono {
  return createApi(opts).app;
}

/** Builds the Hono application and the fast path of its `fastRoutes`. */
export function createApi(opts: ServerOptions): Api {
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
    requests.inc({ route, method: methodLabel(c.req.method), status: String(c.res.status) });
    latency.observe((performance.now() - start) / 1000, { route });
  });
  app.use(defaultBodyLimit(opts.bodyLimitBytes));

  // The one place an HTTP request's failure becomes an answer: sub-apps have
  // no error handlers of their own, so whatever they throw ends up here.
  app.onError((err, c) => {
    const { status, body, headers } = renderError(err, c.req.method, c.req.path);
    for (const [k, v] of Object.entries(headers)) c.header(k, v);
    return c.json(body, status as ContentfulStatusCode);
  });

  app.notFound((c) =>
    c.json(
      { error: { code: "not_found", message: `no route for ${c.req.method} ${c.req.path}` } },
      404,
    )
  );

  app.get("/healthz", (c) => c.json(HEALTHY.json));
  app.get("/readyz", (c) => {
    const { status, json } = readiness(opts.notReady());
    return c.json(json, status as ContentfulStatusCode);
  });
  app.get("/metrics", (c) => {
    return c.body(opts.metrics.render(), 200, { "Content-Type": METRICS_CONTENT_TYPE });
  });
  app.get("/", () => opts.dashboard());

  app.use("/api/v1/*", bearerAuth(opts.token));
  for (const r of opts.routes) app.route(r.path, r.app);

  // Each fast route's request series, labels resolved once (as the middleware above names them).
  const fastRoutes = new Map([...probeRoutes(opts.notReady), ...opts.fastRoutes ?? []].map((r) => {
    const byStatus = new Map<number, (n?: number) => void>();
    const counted = (status: number) => {
      let inc = byStatus.get(status);
      if (!inc) {
        inc = requests.series({ route: r.path, method: r.method, status: String(status) });
        byStatus.set(status, inc);
      }
      return inc;
    };
    return [r.path, { r, counted, observe: latency.series({ route: r.path }) }];
  }));
  const matches = bearerMatcher(opts.token);
  // Heads the server shares between requests (frozen: the same bytes, the
  // same object) whose token matched: a client sends the same head request
  // after request, and its check is then a lookup. Any other head is checked,
  // in constant time, every time.
  const authorizedHeads = new WeakSet<RequestHead>();
  const authorized = (head: RequestHead) => {
    if (authorizedHeads.has(head)) return true;
    if (!matches(fieldValue(head, "authorization"))) return false;
    if (Object.isFrozen(head)) authorizedHeads.add(head);
    return true;
  };
  const fast: FastHandler = (head, body) => {
    const route = fastRoutes.get(head.target);
    if (route === undefined || route.r.method !== head.method) return undefined;
    if (route.r.path.startsWith("/api/v1/") && !authorized(head)) return undefined;
    const start = performance.now();
    const answer = route.r.handle(head, body);
    if (answer === undefined) return undefined;
    const done = (a: RawAnswer) => {
      route.counted(a.status)();
      route.observe((performance.now() - start) / 1000);
      return a;
    };
    return answer.then(done, (err) => {
      const { status, body, headers } = renderError(err, head.method, route.r.path);
      // Listed as the application's answer lists its fields: lower-case, sorted.
      const fields = new Headers({ ...headers, "content-type": "application/json" });
      return done({ status, headers: [...fields], body: encoder.encode(JSON.stringify(body)) });
    });
  };
  return { app, fast };
}

const encoder = new TextEncoder();

/** An answer of the probes: its status and JSON body. */
interface ProbeAnswer {
  status: number;
  json: Record<string, unknown>;
}

const HEALTHY: ProbeAnswer = { status: 200, json: { status: "ok" } };

/** `/readyz`'s answer for the reasons the process is not ready (none: ready). */
function readiness(reasons: string[]): ProbeAnswer {
  return reasons.length === 0
    ? { status: 200, json: { status: "ready" } }
    : { status: 503, json: { status: "not_ready", reasons } };
}

const JSON_FIELDS = [["content-type", "application/json"]] as const;

function raw({ status, json }: ProbeAnswer): RawAnswer {
  return { status, headers: JSON_FIELDS, body: encoder.encode(JSON.stringify(json)) };
}

/**
 * `/healthz` and `/readyz` on the server's fast path: a supervisor polls them
 * every few seconds, and they need nothing of the application's request
 * machinery (as the application, they answer without a bearer token).
 */
function probeRoutes(notReady: () => string[]): FastRoute[] {
  const healthy = raw(HEALTHY);
  return [
    { method: "GET", path: "/healthz", handle: () => Promise.resolve(healthy) },
    { method: "GET", path: "/readyz", handle: () => Promise.resolve(raw(readiness(notReady()))) },
  ];
}
