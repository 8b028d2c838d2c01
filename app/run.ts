/**
 * The edged process: open the store, start the HTTP API and every component,
 * report readiness, and shut down cleanly on SIGTERM/SIGINT.
 *
 * @module
 */
import {
  Bus,
  type Component,
  type Config,
  connectionsWithin,
  createApi,
  dashboardPage,
  ensureApiToken,
  type HttpServer,
  ingestFastRoute,
  type IngestOptions,
  ingestRoutes,
  Metrics,
  parseListen,
  publishReadings,
  raiseOpenFileLimit,
  ReadingLog,
  registerProcessMetrics,
  registerServerMetrics,
  registerStoreMetrics,
  type Route,
  type RuntimeContext,
  secureDataDir,
  serveHttp,
  Store,
  VERSION,
} from "../runtime/mod.ts";
import { collectNow, EXIT, getLogger } from "../lib/mod.ts";
import { createComponents } from "./components.ts";

const log = getLogger(["edged", "runtime"]);

/** Options for {@linkcode runEdged}. */
export interface RunOptions {
  /**
   * Aborting it shuts down like SIGTERM (tests, and the launcher's end); a
   * string reason is logged as the reason.
   */
  signal?: AbortSignal;
  /** Called once the API listens. */
  onListen?: (addr: { hostname: string; port: number }) => void;
  /** Handle SIGTERM/SIGINT. @default {true} */
  handleSignals?: boolean;
}

/**
 * Runs edged until a signal (or `options.signal`) stops it; resolves with the
 * exit code.
 */
export async function runEdged(config: Config, options: RunOptions = {}): Promise<number> {
  const { handleSignals = true } = options;
  const dataDir = await Deno.realPath(await ensureDir(config.data_dir));
  const narrowed = await secureDataDir(dataDir);
  if (narrowed.length > 0) {
    log.warning(
      "made {count} paths in the data directory private to edged's user (0700/0600): {paths}",
      {
        count: narrowed.length,
        paths: narrowed.slice(0, 10).join(", ") + (narrowed.length > 10 ? ", ..." : ""),
      },
    );
  }
  const { token, generated, path: tokenPath } = await ensureApiToken(dataDir, config.api_token);
  if (generated) {
    log.warning(
      "generated an API token (stored in {path}, mode 0600); use it as 'Authorization: Bearer {token}'",
      { path: tokenPath, token },
    );
  }

  const metrics = new Metrics();
  const stopProcessMetrics = registerProcessMetrics(metrics);
  const busErrors = metrics.counter(
    "edged_bus_handler_errors_total",
    "Bus subscribers that threw while handling a message.",
  );
  const store = Store.open(dataDir);
  const bus = new Bus({
    commits: store.commits,
    onError: (err, msg) => {
      busErrors.inc();
      log.error("bus handler failed on {topic}: {error}", { topic: msg.topic, error: String(err) });
    },
  });
  const readings = new ReadingLog(store, {
    maxPending: config.store.max_pending_readings,
    retainUplinked: config.store.retain_uplinked,
    forward: config.mqtt.forward_readings,
    onCommitted: (rows) => publishReadings(bus, rows),
  });
  registerStoreMetrics(metrics, store, readings, bus);

  let exitCode: number = EXIT.OK;
  const stopping = new AbortController();
  const requestExit = (code: number, reason: string) => {
    if (stopping.signal.aborted) return;
    log.info("shutting down: {reason}", { reason });
    exitCode = code;
    stopping.abort();
  };
  const ctx: RuntimeContext = {
    config,
    dataDir,
    store,
    bus,
    metrics,
    readings,
    requestExit,
    stopping: stopping.signal,
  };
  const components = await createComponents(ctx);

  let started = false;
  const notReady = (): string[] => {
    const reasons: string[] = [];
    if (stopping.signal.aborted) reasons.push("shutting down");
    if (!store.isOpen) reasons.push("store: closed");
    if (!started) reasons.push("starting");
    for (const c of components) {
      for (const r of c.notReady?.() ?? []) reasons.push(`${c.name}: ${r}`);
    }
    return reasons;
  };
  ctx.readiness = notReady;

  const ingest: IngestOptions = {
    log: readings,
    bodyLimitBytes: config.http.body_limit_bytes,
    maxBatch: config.http.max_batch,
    maxFutureSkewMs: config.http.max_future_skew_s * 1000,
    readingsCounter: metrics.counter(
      "edged_ingest_readings_total",
      "Readings received over HTTP, by outcome (accepted, rejected, full).",
      ["outcome"],
    ),
  };
  const routes: Route[] = [
    { path: "/api/v1/data", app: ingestRoutes(ingest) },
    ...components.flatMap((c) => c.routes ?? []),
  ];
  const { app, fast } = createApi({
    token,
    metrics,
    notReady,
    routes,
    fastRoutes: [ingestFastRoute("/api/v1/data", ingest)],
    dashboard: () => dashboardPage({ deviceId: config.device_id, version: VERSION }),
    bodyLimitBytes: config.http.body_limit_bytes,
  });

  // Before listening: Deno sets up its signal thread on the first listener and
  // needs a descriptor for it, which a flood of connections may leave none of.
  const onSignal = (name: string) => () => requestExit(EXIT.OK, `received ${name}`);
  const sigterm = onSignal("SIGTERM");
  const sigint = onSignal("SIGINT");
  if (handleSignals) {
    Deno.addSignalListener("SIGTERM", sigterm);
    Deno.addSignalListener("SIGINT", sigint);
  }

  const listen = parseListen(config.listen)!;
  const maxConnections = await openFileLimits(config.http.max_connections);
  let server: HttpServer;
  try {
    server = serveHttp({
      hostname: listen.hostname,
      port: listen.port,
      maxConnections,
      headerTimeoutMs: config.http.header_timeout_s * 1000,
      idleTimeoutMs: config.http.idle_timeout_s * 1000,
      requestTimeoutMs: config.http.request_timeout_s * 1000,
      fast,
      onListen: (addr) => {
        const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
        if (!isLoopback(addr.hostname)) warnCleartext(`${host}:${addr.port}`);
        log.info("listening on http://{host}:{port}", {
          host,
          port: addr.port,
          url: `http://${host}:${addr.port}`,
        });
        options.onListen?.(addr);
      },
      onError: (err) => {
        log.error("HTTP handler failed: {error}", { error: String(err) });
      },
      onAcceptError: rateLimited(10_000, (err, delayMs) => {
        log.warning("accepting HTTP connections failed ({error}); retrying in {delay} ms", {
          error: err.message,
          delay: delayMs,
        });
      }),
    }, (req, info) => app.fetch(req, info));
  } catch (err) {
    store.close();
    stopProcessMetrics();
    if (handleSignals) {
      Deno.removeSignalListener("SIGTERM", sigterm);
      Deno.removeSignalListener("SIGINT", sigint);
    }
    throw new Error(`cannot listen on ${config.listen}: ${(err as Error).message}`, { cause: err });
  }
  registerServerMetrics(metrics, server);

  const onAbort = () => {
    const reason = options.signal?.reason;
    requestExit(EXIT.OK, typeof reason === "string" ? reason : "stop requested");
  };
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener("abort", onAbort, { once: true });

  const startedComponents: Component[] = [];
  try {
    for (const c of components) {
      if (stopping.signal.aborted) break;
      await c.start?.();
      startedComponents.push(c);
    }
    started = true;
    log.info("edged {version} ready (device {device}, data in {dataDir})", {
      version: VERSION,
      device: config.device_id,
      dataDir,
    });
    // Start-up leaves megabytes of garbage and a young generation grown to
    // hold it, which an idle edged would keep for good (it never collects).
    collectNow();
  } catch (err) {
    log.error("a component failed to start: {error}", { error: String(err) });
    requestExit(EXIT.FAILURE, "start failed");
  }

  if (!stopping.signal.aborted) {
    await new Promise((resolve) => stopping.signal.addEventListener("abort", resolve));
  }

  // Shutdown: stop accepting, let in-flight requests finish (their readings
  // commit), stop components in reverse, close the store. Bounded in time.
  const shutdown = async () => {
    await server.shutdown();
    await readings.flushed();
    for (const c of startedComponents.reverse()) {
      try {
        await c.stop?.();
      } catch (err) {
        log.error("component {name} failed to stop: {error}", { name: c.name, error: String(err) });
      }
    }
    store.close();
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), config.shutdown_timeout_s * 1000);
  });
  const outcome = await Promise.race([shutdown().then(() => "done" as const), timedOut]);
  clearTimeout(timer);
  if (handleSignals) {
    Deno.removeSignalListener("SIGTERM", sigterm);
    Deno.removeSignalListener("SIGINT", sigint);
  }
  stopProcessMetrics();
  if (outcome === "timeout") {
    log.error("shutdown took longer than {s} s; exiting anyway", { s: config.shutdown_timeout_s });
    return EXIT.FAILURE;
  }
  log.info("stopped");
  return exitCode;
}

/** Whether `host` is a loopback address (127.0.0.0/8, ::1, also IPv4-mapped). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(h);
}

/** The API speaks plain HTTP: say loudly what that means off loopback (issue 13, L1). */
function warnCleartext(where: string): void {
  log.warning(
    "THE API LISTENS ON {where}, BEYOND LOOPBACK, WITHOUT TLS: the bearer token, readings and " +
      "module uploads cross the network in clear, and /, /healthz, /readyz and /metrics answer " +
      "anyone who reaches it. Listen on 127.0.0.1 behind a TLS reverse proxy " +
      "(docs/operators.md, 'Configure').",
    { where },
  );
}

/**
 * Raises the open-file limit to the hard limit and returns the connection cap
 * that fits it, saying so when either is lower than asked.
 */
async function openFileLimits(wanted: number): Promise<number> {
  const limit = await raiseOpenFileLimit();
  if (limit.raisedFrom !== undefined) {
    log.info("raised the open-file limit from {from} to {to}", {
      from: limit.raisedFrom,
      to: limit.soft,
    });
  } else if (limit.error && limit.soft < limit.hard) {
    log.warning("cannot raise the open-file limit ({soft} of {hard}): {error}", { ...limit });
  }
  const cap = connectionsWithin(limit, wanted);
  if (cap < wanted) {
    log.warning(
      "http.max_connections is {wanted} but the open-file limit ({soft}) allows {cap}; " +
        "raise LimitNOFILE (systemd) or ulimit -n",
      { wanted, soft: limit.soft, cap },
    );
  }
  return cap;
}

/** `fn`, called at most once per `ms` (a flood must not flood the log too). */
function rateLimited<A extends unknown[]>(
  ms: number,
  fn: (...args: A) => void,
): (...args: A) => void {
  let last = -Infinity;
  return (...args) => {
    const now = performance.now();
    if (now - last < ms) return;
    last = now;
    fn(...args);
  };
}

async function ensureDir(dir: string): Promise<string> {
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 }); // an existing one: secureDataDir
  } catch (err) {
    throw new Error(`cannot create data directory ${dir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return dir;
}
