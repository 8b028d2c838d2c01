/**
 * `GET /api/v1/status`: one summary of the device for the dashboard (and for
 * scripts): identity, uptime, readiness, uplink and outbox, update state,
 * modules, southbound adapters, recent alerts and recent log lines.
 *
 * The numbers about the uplink, the store and the process are read from the
 * metrics registry (`Metrics.value`, `Metrics.sum`), the same series
 * `/metrics` renders: the page and a Prometheus alert never disagree, and no
 * component needs a second reporting hook. Only the series shown are read;
 * nothing is rendered or parsed on a poll.
 *
 * @module
 */
import { Hono } from "hono";
import type { Component, RuntimeContext } from "../component.ts";
import { recentLogs } from "../log.ts";
import { VERSION } from "../version.ts";

/** Where the sections owned by other subsystems come from. */
export interface StatusSources {
  /** Every installed module's status (`GET /api/v1/modules` items). */
  modules?: () => unknown[];
  /** Every southbound adapter's status, with a few of its points (`GET /api/v1/adapters` has all). */
  adapters?: () => unknown[];
  /** The updater's status (`GET /api/v1/update`). */
  update?: () => Promise<{ current?: { slot?: string | null } }>;
}

/** Options of {@linkcode statusComponent}. */
export interface StatusOptions {
  /** Bus filters whose messages the page lists as alerts. @default {["alerts/#"]} */
  alertFilters?: string[];
  /** Alerts kept in memory. @default {50} */
  alertCapacity?: number;
}

/** One message seen on an alert topic. */
export interface AlertEntry {
  at: string;
  topic: string;
  source: string;
  payload: unknown;
}

/** Parsed samples of the exposition format: `name` → labels → value. */
type Samples = Map<string, { labels: Record<string, string>; value: number }[]>;

const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/**
 * Parses sample lines of the Prometheus text format 0.0.4 (`name{l="v"} value`),
 * for readers of `/metrics` text (the status route reads the registry itself).
 */
export function parseSamples(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const brace = line.indexOf("{");
    const space = line.lastIndexOf(" ");
    if (space < 0) continue;
    const name = brace >= 0 && brace < space ? line.slice(0, brace) : line.slice(0, space);
    const labels: Record<string, string> = {};
    if (brace >= 0 && brace < space) {
      for (const m of line.slice(brace, line.lastIndexOf("}") + 1).matchAll(LABEL)) {
        labels[m[1]] = m[2].replace(/\\n/g, "\n").replace(/\\(["\\])/g, "$1");
      }
    }
    const value = Number(line.slice(space + 1));
    let list = out.get(name);
    if (!list) out.set(name, list = []);
    list.push({ labels, value });
  }
  return out;
}

/** The broker address without credentials or query (the page is shown to anyone with the token). */
function brokerAddress(url: string | undefined): string | null {
  if (!url) return null;
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return null;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function payloadOf(bytes: Uint8Array): unknown {
  if (bytes.byteLength > 1024) return `(${bytes.byteLength} bytes)`;
  try {
    const text = utf8.decode(bytes);
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  } catch {
    return `(${bytes.byteLength} binary bytes)`;
  }
}

/**
 * Builds the status component: it listens to alert topics on the bus while
 * running and serves `GET /api/v1/status` (`?logs=N`, default 50, at most 200).
 */
export function statusComponent(
  ctx: RuntimeContext,
  sources: StatusSources = {},
  options: StatusOptions = {},
): Component {
  const { alertFilters = ["alerts/#"], alertCapacity = 50 } = options;
  const alerts: AlertEntry[] = [];
  const unsubscribe: (() => void)[] = [];

  const app = new Hono();
  app.get("/", async (c) => {
    const logLimit = Math.min(200, Math.max(0, Number(c.req.query("logs") ?? 50) || 0));
    const m = ctx.metrics;
    let update: { current?: { slot?: string | null } } | { error: string } | null = null;
    if (sources.update) {
      try {
        update = await sources.update();
      } catch (err) {
        update = { error: (err as Error).message };
      }
    }
    const notReady = ctx.readiness?.() ?? [];
    const slot = update && "current" in update ? update.current?.slot ?? null : null;
    return c.json({
      device_id: ctx.config.device_id,
      version: VERSION,
      slot,
      started_at: new Date(performance.timeOrigin).toISOString(),
      uptime_seconds: Math.round(performance.now() / 1000),
      ready: notReady.length === 0,
      not_ready: notReady,
      process: {
        resident_memory_bytes: m.value("process_resident_memory_bytes"),
        heap_bytes: m.value("process_heap_bytes"),
        cpu_seconds: m.value("process_cpu_seconds_total"),
        event_loop_lag_seconds: m.value("edged_event_loop_lag_seconds"),
      },
      store: {
        size_bytes: m.value("edged_store_size_bytes"),
        readings_committed: m.value("edged_store_readings_committed_total"),
        readings_pending: m.value("edged_readings_pending"),
        disk_full: m.value("edged_store_disk_full") === 1,
        commit_failures: m.value("edged_store_commit_failures_total"),
      },
      mqtt: {
        configured: ctx.config.mqtt.url !== undefined,
        broker: brokerAddress(ctx.config.mqtt.url),
        connected: m.value("edged_mqtt_connected") === 1,
        connects: m.value("edged_mqtt_connects_total"),
        connect_failures: m.value("edged_mqtt_connect_failures_total"),
        inflight: m.value("edged_mqtt_inflight_messages"),
        acked: m.value("edged_mqtt_acked_total"),
      },
      outbox: {
        readings: m.value("edged_mqtt_outbox_messages", { stream: "readings" }),
        messages: m.value("edged_mqtt_outbox_messages", { stream: "messages" }),
        oldest_age_seconds: m.value("edged_mqtt_outbox_oldest_age_seconds"),
        dropped: m.sum("edged_mqtt_dropped_total") ?? 0,
      },
      update,
      modules: sources.modules?.() ?? [],
      adapters: sources.adapters?.() ?? [],
      alerts: alerts.slice().reverse(),
      logs: logLimit > 0 ? recentLogs(logLimit) : [],
    });
  });

  return {
    name: "status",
    start() {
      for (const f of alertFilters) {
        unsubscribe.push(ctx.bus.subscribe(f, (msg) => {
          // The bus calls handlers synchronously: keep this to a push.
          alerts.push({
            at: new Date().toISOString(),
            topic: msg.topic,
            source: msg.source,
            payload: payloadOf(msg.payload),
          });
          if (alerts.length > alertCapacity) alerts.shift();
        }));
      }
      return Promise.resolve();
    },
    stop() {
      for (const u of unsubscribe.splice(0)) u();
      return Promise.resolve();
    },
    routes: [{ path: "/api/v1/status", app }],
  };
}
