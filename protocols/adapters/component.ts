/**
 * The southbound adapter framework as a runtime component: builds one adapter
 * per configured block (through the factory of its kind), starts and stops
 * them, makes their readings durable through the reading log (the path of
 * `POST /api/v1/data`: they appear on the bus as `sensors/{device_id}/{metric}`
 * and go uplink), routes `devices/{adapter}/{metric}/set` bus messages to
 * `write` and answers on `.../set/result`, and reports everything in
 * `GET /api/v1/adapters`, `/readyz` and `/metrics`.
 *
 * Who may write: modules, through their manifest's `publish` grants (the
 * topic is checked before the message reaches the bus). Messages from any
 * other source, in particular the MQTT broker (`mqtt.subscribe`, source
 * `mqtt`), are refused: a broker client writes only through the MQTT command
 * `adapter-write` under the command trust model, which calls
 * {@linkcode AdaptersComponent.write}. Every write, whoever asked, is counted
 * and its outcome published on `.../set/result` with the requester's `source`.
 *
 * @module
 */
import { Hono } from "hono";
import {
  type AdaptersConfig,
  ApiError,
  type Bus,
  type BusMessage,
  type Component,
  type Metrics,
  type ReadingLog,
} from "../../runtime/mod.ts";
import { errorCode, getLogger, topicProblem } from "../../lib/mod.ts";
import { type Adapter, AdapterError, type AdapterStatus, type PointValue } from "./contract.ts";

const log = getLogger(["edged", "adapters"]);

/** Builds the adapter of one configuration block (may load its library first). */
export type AdapterFactory<Block = never> = (block: Block) => Adapter | Promise<Adapter>;

/** One factory per kind of `[adapters]`: a kind added to the schema needs its factory here. */
export type AdapterFactories = {
  [K in keyof AdaptersConfig]: AdapterFactory<AdaptersConfig[K][number]>;
};

/** Options of {@linkcode adaptersComponent}. */
export interface AdaptersOptions {
  /** The `[adapters]` section. */
  config: AdaptersConfig;
  /** One factory per kind (`modbus`, `opcua`, ...). */
  factories: AdapterFactories;
  bus: Bus;
  readings: ReadingLog;
  metrics: Metrics;
  /** Writes that may wait per adapter before more are refused (`busy`). @default {16} */
  maxPendingWrites?: number;
}

/** The component, with the framework's own surface for other subsystems. */
export interface AdaptersComponent extends Component {
  /** Every adapter's status, in configuration order (empty before start). */
  status(): AdapterStatus[];
  /**
   * Every adapter's status with only its first `maxPoints` points and
   * `points_total` (the dashboard's summary, polled every few seconds).
   */
  overview(maxPoints?: number): (AdapterStatus & { points_total: number })[];
  /**
   * Writes a point of an adapter as a bus message would: counts the outcome
   * and publishes it on `devices/{adapter}/{metric}/set/result` with
   * `origin`'s `source` and `id` (except an `unknown_point` asked by anyone
   * but a module: no topic for a point that does not exist is made up on the
   * bus). Rejects with the {@linkcode AdapterError} of
   * a failed write (`unknown_point` for an adapter or point that does not
   * exist, `not_writable`, `busy`, the device's own error).
   */
  write(adapter: string, metric: string, value: PointValue, origin: WriteOrigin): Promise<void>;
}

/** Who asked for a write: echoed in its outcome on `.../set/result`. */
export interface WriteOrigin {
  /** The requester: the bus source of a `/set` message (`module:NAME`), or `command:adapter-write`. */
  source: string;
  /** The request's `id`, echoed. */
  id?: string | number;
}

/** The `/set` topic filter and its levels. */
const SET_FILTER = "devices/+/+/set";

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** The body of a `/set` message: a number, a boolean, or `{"value": ..., "id": ...}`. */
export function parseSetPayload(
  payload: Uint8Array,
): { value: PointValue; id?: string | number } {
  let v: unknown;
  try {
    v = JSON.parse(decoder.decode(payload));
  } catch {
    throw new AdapterError(
      "invalid_value",
      "payload must be JSON: a number, true/false or {value}",
    );
  }
  let id: string | number | undefined;
  if (v && typeof v === "object" && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if (typeof o.id === "string" || typeof o.id === "number") id = o.id;
    v = o.value;
  }
  if (isPointValue(v)) return { value: v, id };
  throw new AdapterError("invalid_value", "value must be a finite number or true/false");
}

/** Whether `v` can be written to a point: a finite number or a boolean. */
export function isPointValue(v: unknown): v is PointValue {
  return typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v));
}

/**
 * The outcome topic of a write, or undefined when `adapter` or `metric` is
 * not one clean topic level (a command names them itself; it must not
 * choose another topic for the outcome).
 */
function resultTopic(adapter: string, metric: string): string | undefined {
  if (!adapter || !metric || adapter.includes("/") || metric.includes("/")) return undefined;
  const topic = `devices/${adapter}/${metric}/set/result`;
  return topicProblem(topic) === undefined ? topic : undefined;
}

interface Entry {
  adapter: Adapter;
  deviceId: string;
  controller: AbortController;
  pendingWrites: number;
}

/** Builds the framework component. */
export function adaptersComponent(options: AdaptersOptions): AdaptersComponent {
  const { config, factories, bus, readings, metrics, maxPendingWrites = 16 } = options;
  const blocks = Object.entries(config).flatMap(([kind, list]) =>
    (list as { name: string; device_id?: string }[]).map((block) => ({ kind, block }))
  );
  const factoryOf = (kind: string) =>
    (factories as unknown as Record<string, AdapterFactory<unknown> | undefined>)[kind];
  for (const { kind } of blocks) {
    if (!factoryOf(kind)) throw new Error(`no adapter factory for kind '${kind}'`);
  }
  const entries: Entry[] = [];
  const byName = new Map<string, Entry>();
  let unsubscribe: (() => void) | null = null;

  const polls = metrics.counter(
    "edged_adapter_polls_total",
    "Polls (or notifications) completed per adapter, by outcome (ok: every point read).",
    ["adapter", "outcome"],
  );
  const pollSeconds = metrics.histogram(
    "edged_adapter_poll_duration_seconds",
    "Time one poll of all an adapter's points took.",
    undefined,
    ["adapter"],
  );
  const errors = metrics.counter(
    "edged_adapter_errors_total",
    "Adapter errors by kind (timeout, connection, exception, decode, ...).",
    ["adapter", "kind"],
  );
  const produced = metrics.counter(
    "edged_adapter_readings_total",
    "Readings an adapter made durable in the reading log.",
    ["adapter"],
  );
  const dropped = metrics.counter(
    "edged_adapter_readings_dropped_total",
    "Readings given up because the reading log stayed full.",
    ["adapter"],
  );
  const writes = metrics.counter(
    "edged_adapter_writes_total",
    "Point writes by outcome (ok, or the error kind).",
    ["adapter", "outcome"],
  );
  metrics.gauge(
    "edged_adapter_connected",
    "1 while the adapter is connected to its device.",
    ["adapter"],
    (set) => {
      for (const e of entries) {
        set(e.adapter.status().state === "connected" ? 1 : 0, {
          adapter: e.adapter.name,
        });
      }
    },
  );
  metrics.collectedCounter(
    "edged_adapter_reconnects_total",
    "Connections an adapter made again after losing one.",
    ["adapter"],
    (set) => {
      for (const e of entries) set(e.adapter.status().reconnects, { adapter: e.adapter.name });
    },
  );

  const configured = new Set(blocks.map(({ block }) => block.name));

  const send = async (name: string, metric: string, value: PointValue): Promise<void> => {
    const e = byName.get(name);
    // A command may arrive once MQTT is up, before the adapters have started.
    if (!e && configured.has(name)) {
      throw new AdapterError("connection", `adapter '${name}' has not started yet`);
    }
    if (!e) throw new AdapterError("unknown_point", `no adapter '${name}'`);
    if (e.pendingWrites >= maxPendingWrites) {
      throw new AdapterError("busy", `${e.pendingWrites} writes already wait for ${name}`);
    }
    e.pendingWrites++;
    try {
      await e.adapter.write(metric, value);
    } finally {
      e.pendingWrites--;
    }
  };

  /** Counts one outcome and publishes it on `devices/{name}/{metric}/set/result`. */
  const report = (
    name: string,
    metric: string,
    origin: WriteOrigin,
    outcome: { value: PointValue } | { error: unknown },
  ) => {
    const idField = origin.id !== undefined ? { id: origin.id } : {};
    let body: { error?: { code: string } } & Record<string, unknown>;
    if ("error" in outcome) {
      const err = outcome.error;
      const e = errorCode(err);
      // Only configured adapters get a label: a requester's made-up names
      // must not grow the metrics without bound.
      if (configured.has(name)) writes.inc({ adapter: name, outcome: e.code });
      if (!(err instanceof AdapterError)) {
        log.error("write of {adapter}/{metric} failed: {error}", {
          adapter: name,
          metric,
          error: String((err as Error)?.stack ?? err),
        });
      } else if (e.code === "forbidden") {
        log.warning("refused a write of {adapter}/{metric} from {source}: {error}", {
          adapter: name,
          metric,
          source: origin.source,
          error: e.message,
        });
      }
      body = { ok: false, ...idField, error: e, source: origin.source };
    } else {
      writes.inc({ adapter: name, outcome: "ok" });
      body = { ok: true, ...idField, value: outcome.value, source: origin.source };
    }
    // A module's grant chose the topic; a command's names come from the
    // broker, so a point that does not exist is answered to the requester
    // only and puts nothing on the bus.
    if (body.error?.code === "unknown_point" && !origin.source.startsWith("module:")) return;
    const topic = resultTopic(name, metric);
    if (topic === undefined) return;
    try {
      bus.publish(topic, encoder.encode(JSON.stringify(body)), `adapter:${name}`);
    } catch (err) {
      log.error("cannot publish {topic}: {error}", { topic, error: String(err) });
    }
  };

  const write = async (
    name: string,
    metric: string,
    value: PointValue,
    origin: WriteOrigin,
  ): Promise<void> => {
    try {
      await send(name, metric, value);
    } catch (error) {
      report(name, metric, origin, { error });
      throw error;
    }
    report(name, metric, origin, { value });
  };

  const onSet = (msg: BusMessage) => {
    const [, name, metric] = msg.topic.split("/");
    const origin: WriteOrigin = { source: msg.source };
    try {
      // Fail closed: only a module's publish, checked against its grants,
      // writes through the bus; a broker message (source "mqtt") never does.
      if (!msg.source.startsWith("module:")) {
        throw new AdapterError(
          "forbidden",
          `only modules write through the bus (this came from ${msg.source}); ` +
            "the broker writes through the MQTT command adapter-write",
        );
      }
      const parsed = parseSetPayload(msg.payload);
      origin.id = parsed.id;
      write(name, metric, parsed.value, origin).catch(() => {}); // reported by write
    } catch (error) {
      report(name, metric, origin, { error });
    }
  };

  const app = new Hono();
  app.get("/", (c) => c.json({ adapters: entries.map((e) => e.adapter.status()) }));
  app.get("/:name", (c) => {
    const e = byName.get(c.req.param("name"));
    if (!e) throw new ApiError(404, "not_found", `no adapter '${c.req.param("name")}'`);
    return c.json(e.adapter.status());
  });

  return {
    name: "adapters",
    async start() {
      for (const { kind, block } of blocks) {
        const adapter = await factoryOf(kind)!(block);
        const deviceId = block.device_id ?? block.name;
        const entry: Entry = {
          adapter,
          deviceId,
          controller: new AbortController(),
          pendingWrites: 0,
        };
        const label = { adapter: adapter.name };
        adapter.observe = (ev) => {
          switch (ev.type) {
            case "poll":
              polls.inc({ ...label, outcome: ev.ok ? "ok" : "error" });
              pollSeconds.observe(ev.seconds, label);
              break;
            case "error":
              errors.inc({ ...label, kind: ev.kind });
              break;
            case "readings":
              produced.inc(label, ev.count);
              break;
            case "dropped":
              dropped.inc(label, ev.count);
              break;
          }
        };
        entries.push(entry);
        byName.set(adapter.name, entry);
      }
      unsubscribe = bus.subscribe(SET_FILTER, onSet);
      for (const e of entries) {
        await e.adapter.start({
          signal: e.controller.signal,
          ingest: async (rows) => {
            await readings.append(rows.map((r) => ({
              device_id: e.deviceId,
              metric: r.metric,
              value: r.value,
              timestamp: r.timestamp,
            })));
          },
        });
        log.info("adapter {name} ({kind}) started for device {device}", {
          name: e.adapter.name,
          kind: e.adapter.kind,
          device: e.deviceId,
        });
      }
    },
    async stop() {
      unsubscribe?.();
      unsubscribe = null;
      for (const e of entries) e.controller.abort();
      await Promise.all(entries.map(async (e) => {
        try {
          await e.adapter.stop();
        } catch (err) {
          log.error("adapter {name} failed to stop: {error}", {
            name: e.adapter.name,
            error: String(err),
          });
        }
      }));
    },
    notReady() {
      const reasons: string[] = [];
      for (const e of entries) {
        const s = e.adapter.status();
        if (s.state === "connected") continue;
        reasons.push(`${s.name}: ${s.state}${s.last_error ? ` (${s.last_error.message})` : ""}`);
      }
      return reasons;
    },
    routes: [{ path: "/api/v1/adapters", app }],
    status: () => entries.map((e) => e.adapter.status()),
    overview: (maxPoints = 20) =>
      entries.map((e) => {
        const s = e.adapter.status();
        return { ...s, points: s.points.slice(0, maxPoints), points_total: s.points.length };
      }),
    write,
  };
}
