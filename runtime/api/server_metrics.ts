/**
 * Metrics of the HTTP server itself (below the request metrics of
 * `server.ts`): open connections, the cap, why connections closed, and
 * failed accepts.
 *
 * @module
 */
import type { Metrics } from "../metrics.ts";
import { CLOSE_REASONS, type HttpServer } from "./http_server.ts";

/** Registers the server's gauges and counters, read at scrape time. */
export function registerServerMetrics(metrics: Metrics, server: HttpServer): void {
  metrics.gauge(
    "edged_http_connections",
    "Open HTTP connections.",
    [],
    (set) => set(server.connections),
  );
  metrics.gauge(
    "edged_http_connections_max",
    "The cap on open HTTP connections (http.max_connections within the open-file limit).",
    [],
    (set) => set(server.maxConnections),
  );
  metrics.counterFunc(
    "edged_http_connections_accepted_total",
    "HTTP connections accepted.",
    () => server.stats.accepted,
  );
  metrics.collectedCounter(
    "edged_http_connections_closed_total",
    "HTTP connections closed, by reason (done, header_timeout, idle_timeout, body_timeout, write_timeout, evicted: replaced at the cap, refused: 503 at the cap, bad_request, shutdown, error).",
    ["reason"],
    (set) => {
      for (const r of CLOSE_REASONS) set(server.stats.closed[r], { reason: r });
    },
  );
  metrics.counterFunc(
    "edged_http_accept_errors_total",
    "Failed accepts of HTTP connections: out of descriptors (the server backs off and retries), or a connection its client reset before it was accepted (skipped at once).",
    () => server.stats.acceptErrors,
  );
}
