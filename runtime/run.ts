/**
 * The edged process: open the store, start the HTTP API and every component,
 * report readiness, and shut down cleanly on SIGTERM/SIGINT.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { Bus } from "./bus.ts";
import type { Component, RuntimeContext } from "./component.ts";
import { type Config, parseListen } from "./config.ts";
import { dashboardPage } from "./dashboard.ts";
import { createApp, type Route } from "./api/server.ts";
import { ingestRoutes } from "./api/ingest.ts";
import { statusComponent } from "./api/status.ts";
import { Metrics } from "./metrics.ts";
import { registerProcessMetrics } from "./process_metrics.ts";
import { ReadingLog, type StoredReading } from "./readings.ts";
import { Store } from "./store.ts";
import { ensureApiToken } from "./token.ts";
import { VERSION } from "./version.ts";
import { modulesComponent } from "../sandbox/mod.ts";
import { mqttComponent } from "../protocols/mod.ts";
import { updaterComponent } from "../ota/mod.ts";

const log = getLogger(["edged", "runtime"]);

/** Process exit codes. */
export const EXIT = {
  /** Clean shutdown. */
  OK: 0,
  /** Runtime failure (could not start, or shutdown timed out). */
  FAILURE: 1,
  /** Bad command line or configuration. */
  USAGE: 2,
} as const;

/** Options for {@linkcode runEdged}. */
export interface RunOptions {
  /** Aborting it shuts down like SIGTERM (tests use it). */
  signal?: AbortSignal;
  /** Called once the API listens. */
  onListen?: (addr: { hostname: string; port: number }) => void;
  /** Handle SIGTERM/SIGINT. @default {true} */
  handleSignals?: boolean;
}

/**
 * Builds the components of the runtime from the shared services, in start
 * order (they stop in reverse).
 */
function createComponents(ctx: RuntimeContext): Component[] {
  const m = ctx.config.modules;
  const modules = modulesComponent({
    dataDir: ctx.dataDir,
    bus: ctx.bus,
    store: ctx.store,
    metrics: ctx.metrics,
    preload: m.preload,
    queueCapacity: m.queue_capacity,
    faultLimit: m.fault_limit,
    quarantineMs: m.quarantine_ms,
    logLinesPerSecond: m.log_lines_per_second,
    workers: m.workers,
  });
  // MQTT first: it starts before and stops after the modules, so their last
  // uplink messages still reach the durable outbox.
  const mqtt = mqttComponent({
    config: ctx.config.mqtt,
    deviceId: ctx.config.device_id,
    bus: ctx.bus,
    store: ctx.store,
    readings: ctx.readings,
    metrics: ctx.metrics,
    maxPendingReadings: ctx.config.store.max_pending_readings,
    modules: modules.host,
  });
  // Last: its boot confirmation waits for everything before it to be ready.
  const update = updaterComponent(ctx, {
    factoryVersion: VERSION,
    installModule: (manifest, wasm) => modules.host.install(manifest, wasm),
  });
  update.attachMqtt(mqtt);
  const status = statusComponent(ctx, {
    modules: () => modules.host.names().map((n) => modules.host.status(n)),
    update: () => update.updater.status(),
  });
  return [mqtt, modules, update, status];
}

const encoder = new TextEncoder();

/** Publishes committed readings on the bus as `sensors/{device_id}/{metric}`. */
function publishReadings(bus: Bus, rows: StoredReading[]): void {
  if (bus.subscriptions === 0) return;
  for (const r of rows) {
    const topic = `sensors/${r.device_id}/${r.metric}`;
    if (!bus.wants(topic)) continue;
    const payload = encoder.encode(JSON.stringify({
      device_id: r.device_id,
      metric: r.metric,
      value: r.value,
      timestamp: r.timestamp,
    }));
    bus.publish(topic, payload, "ingest");
  }
}

/**
 * Runs edged until a signal (or `options.signal`) stops it; resolves with the
 * exit code.
 */
export async function runEdged(config: Config, options: RunOptions = {}): Promise<number> {
  const { handleSignals = true } = options;
  const dataDir = await Deno.realPath(await ensureDir(config.data_dir));
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
  const bus = new Bus({
    onError: (err, msg) => {
      busErrors.inc();
      log.error("bus handler failed on {topic}: {error}", { topic: msg.topic, error: String(err) });
    },
  });
  const store = Store.open(dataDir);
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
  const ctx: RuntimeContext = { config, dataDir, store, bus, metrics, readings, requestExit };
  const components = createComponents(ctx);

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

  const routes: Route[] = [
    {
      path: "/api/v1/data",
      app: ingestRoutes({
        log: readings,
        bodyLimitBytes: config.http.body_limit_bytes,
        maxBatch: config.http.max_batch,
        maxFutureSkewMs: config.http.max_future_skew_s * 1000,
        readingsCounter: metrics.counter(
          "edged_ingest_readings_total",
          "Readings received over HTTP, by outcome (accepted, rejected, full).",
          ["outcome"],
        ),
      }),
    },
    ...components.flatMap((c) => c.routes ?? []),
  ];
  const app = createApp({
    token,
    metrics,
    notReady,
    routes,
    dashboard: () => dashboardPage({ deviceId: config.device_id, version: VERSION }),
  });

  const listen = parseListen(config.listen)!;
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = await new Promise<Deno.HttpServer<Deno.NetAddr>>((resolve, reject) => {
      try {
        const s = Deno.serve({
          hostname: listen.hostname,
          port: listen.port,
          onListen: (addr) => {
            log.info("listening on http://{host}:{port}", {
              host: addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname,
              port: addr.port,
              url: `http://${
                addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname
              }:${addr.port}`,
            });
            options.onListen?.(addr);
          },
          onError: (err) => {
            log.error("HTTP server error: {error}", { error: String(err) });
            return new Response(
              JSON.stringify({ error: { code: "internal", message: "internal error" } }),
              { status: 500, headers: { "content-type": "application/json" } },
            );
          },
        }, app.fetch);
        resolve(s);
      } catch (err) {
        reject(err);
      }
    });
  } catch (err) {
    store.close();
    stopProcessMetrics();
    throw new Error(`cannot listen on ${config.listen}: ${(err as Error).message}`, { cause: err });
  }

  const onSignal = (name: string) => () => requestExit(EXIT.OK, `received ${name}`);
  const sigterm = onSignal("SIGTERM");
  const sigint = onSignal("SIGINT");
  if (handleSignals) {
    Deno.addSignalListener("SIGTERM", sigterm);
    Deno.addSignalListener("SIGINT", sigint);
  }
  options.signal?.addEventListener("abort", () => requestExit(EXIT.OK, "stop requested"));

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

async function ensureDir(dir: string): Promise<string> {
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new Error(`cannot create data directory ${dir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return dir;
}

function registerStoreMetrics(
  metrics: Metrics,
  store: Store,
  readings: ReadingLog,
  bus: Bus,
): void {
  metrics.gauge(
    "edged_store_size_bytes",
    "Database plus write-ahead log on disk, in bytes.",
    [],
    (set) => {
      if (store.isOpen) set(store.sizeBytes());
    },
  );
  metrics.gauge(
    "edged_readings_pending",
    "Readings durable on disk and waiting for uplink.",
    [],
    (set) => set(readings.pending),
  );
  metrics.counterFunc(
    "edged_store_commits_total",
    "Group commits (each one fsync).",
    () => readings.commits,
  );
  metrics.counterFunc(
    "edged_store_readings_committed_total",
    "Readings committed to disk.",
    () => readings.committed,
  );
  metrics.counterFunc(
    "edged_bus_messages_total",
    "Messages published on the internal bus.",
    () => bus.published,
  );
}
