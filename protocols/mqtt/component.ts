/**
 * The MQTT component: durable uplink, retained status with last will,
 * downlink commands, local subscriptions into the bus, and metrics.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { IConnackPacket, MqttClient } from "mqtt";
import {
  type Bus,
  type Config,
  type Metrics,
  type ReadingLog,
  type Store,
  VERSION,
} from "../../runtime/mod.ts";
import { getLogger, topicMatches, validateFilter, validateTopic } from "../../lib/mod.ts";
import { type CommandHandler, CommandRegistry, type CommandResult } from "./commands.ts";
import { Connection } from "./connection.ts";
import { Outbox } from "./outbox.ts";
import { type Publisher, Uplink } from "./uplink.ts";
import { builtinCommands, type ModuleRemover } from "./builtin_commands.ts";

const log = getLogger(["edged", "mqtt"]);

/** Extra status fields (e.g. `slot`, update state) from other subsystems. */
export type StatusProvider = () => Record<string, unknown>;

/** Options for {@linkcode mqttComponent}. */
export interface MqttComponentOptions {
  /** The `[mqtt]` section. */
  config: Config["mqtt"];
  deviceId: string;
  bus: Bus;
  store: Store;
  readings: ReadingLog;
  metrics: Metrics;
  /** `store.max_pending_readings` (the drop-oldest policy trims readings to it). */
  maxPendingReadings: number;
  /** The module host, for `module-remove`. */
  modules?: ModuleRemover;
  /** Adds fields such as `slot` to the status. */
  statusProvider?: StatusProvider;
}

/** The component, with hooks for other subsystems. */
export interface MqttComponent {
  name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  notReady(): string[];
  /** Adds or replaces the handler of `PREFIX/cmd/{name}`. */
  registerCommand(name: string, handler: CommandHandler): void;
  /** Sets where `slot` and other status fields come from. */
  setStatusProvider(provider: StatusProvider): void;
  /** Publishes the retained status again (call on update state changes). */
  refreshStatus(): void;
  /** The topic prefix in use. */
  readonly prefix: string;
}

/**
 * Builds the MQTT component. Without `mqtt.url` it still keeps the outbox,
 * so uplink waits on disk until a broker is configured.
 */
export function mqttComponent(options: MqttComponentOptions): MqttComponent {
  const { config: c, deviceId, bus, store, readings, metrics } = options;
  const prefix = (c.topic_prefix ?? `edged/${deviceId}`).replace(/\/+$/, "");
  const statusTopic = `${prefix}/status`;
  const cmdPrefix = `${prefix}/cmd/`;
  const startedAt = Date.now();
  let statusProvider = options.statusProvider;
  for (const f of c.subscribe) validateFilter(f);
  validateTopic(statusTopic); // a prefix with wildcards fails here, at start

  const dropped = metrics.counter(
    "edged_mqtt_dropped_total",
    "Uplink messages dropped unsent, by reason (full: drop-oldest, refused: refuse-new, expired: age limit, rejected: broker reason code).",
    ["reason"],
  );
  const commandsTotal = metrics.counter(
    "edged_mqtt_commands_total",
    "Downlink commands answered, by command and outcome.",
    ["command", "outcome"],
  );
  const received = metrics.counter(
    "edged_mqtt_received_total",
    "Messages from broker subscriptions fed into the bus.",
  );
  const refusedReplyTopics = metrics.counter(
    "edged_mqtt_response_topics_refused_total",
    "MQTT 5 Response Topics outside PREFIX/cmd/{command}/ that were ignored (answered on .../result instead).",
  );
  const oversized = metrics.counter(
    "edged_mqtt_oversized_dropped_total",
    "PUBLISHes from the broker larger than mqtt.max_packet_bytes, dropped unread.",
  );

  const outbox = new Outbox(store, {
    maxMessages: c.outbox_max_messages,
    maxBytes: c.outbox_max_bytes,
    policy: c.outbox_policy,
    readingMark: () => readings.lastId,
    onDropped: (reason, n) => dropped.inc({ reason }, n),
    onCommitted: () => uplink.wake(),
  });
  const uplink = new Uplink({
    readings,
    outbox,
    prefix,
    forwardReadings: c.forward_readings,
    runCommit: (commit) => {
      // WAL with synchronous=NORMAL: the commit survives a crash of the
      // process, and a power cut can only roll the cursor back (duplicates).
      const db = store.db;
      const level = (db.prepare("PRAGMA synchronous").get() as { synchronous: number }).synchronous;
      db.exec("PRAGMA synchronous = NORMAL");
      try {
        commit();
      } finally {
        db.exec(`PRAGMA synchronous = ${level | 0}`);
      }
    },
    onRejected: (topic, err) => {
      dropped.inc({ reason: "rejected" });
      log.warning("broker rejected {topic}: {error}", { topic, error: err.message });
    },
    onReplayed: (count, seconds) =>
      log.info("replayed {count} messages in {seconds} s ({rate}/s)", {
        count,
        seconds: seconds.toFixed(2),
        rate: Math.round(count / Math.max(seconds, 1e-6)),
      }),
  });

  if (c.outbox_policy === "drop-oldest" && c.forward_readings) {
    // Make room by advancing the uplink cursor past the oldest readings; at
    // least 1 % of the cap at once so a full log does not fsync per request.
    readings.onFull = (excess) => {
      const before = readings.uplinkedId;
      const n = Math.max(excess, Math.ceil(options.maxPendingReadings / 100));
      readings.markUplinked(before + n);
      const gone = readings.uplinkedId - before;
      if (gone > 0) dropped.inc({ reason: "full" }, gone);
      return gone >= excess;
    };
  }

  registerMetrics(metrics, {
    readings,
    outbox,
    uplink,
    forward: c.forward_readings,
    conn: () => conn,
  });

  const commands = new CommandRegistry({
    allow: c.commands.allow,
    ratePerMinute: c.commands.rate_per_minute,
  });
  builtinCommands(commands, {
    version: VERSION,
    startedAt,
    modules: options.modules,
  });

  const status = (state: "online" | "offline") =>
    JSON.stringify({
      state,
      device_id: deviceId,
      version: VERSION,
      slot: null,
      uptime_s: Math.round((Date.now() - startedAt) / 1000),
      ts: new Date().toISOString(),
      ...safeProvider(statusProvider),
    });

  let client: MqttClient | null = null;
  const publishStatus = (cl: MqttClient, state: "online" | "offline") =>
    new Promise<void>((resolve) => {
      cl.publish(statusTopic, status(state), { qos: 1, retain: true }, () => resolve());
    });

  // Answers stay below PREFIX/cmd/{command}/, whatever Response Topic is asked
  // (MQTT 5 section 4.10): never a request topic (a loop), the retained
  // status, the uplink or anybody else's topics (docs/operators.md, "Trust").
  let lastRefusalLog = -Infinity;
  const replyTopic = (command: string, asked: string | undefined): string => {
    const fallback = `${cmdPrefix}${command}/result`;
    if (asked === undefined) return fallback;
    if (isReplyTopic(asked, cmdPrefix)) return asked;
    refusedReplyTopics.inc();
    if (performance.now() - lastRefusalLog > 60_000) {
      lastRefusalLog = performance.now();
      log.warning("ignored Response Topic {asked} of a {command} request: answered on {topic}", {
        asked: asked.slice(0, 200),
        command,
        topic: fallback,
      });
    }
    return fallback;
  };

  const answer = (
    cl: MqttClient,
    command: string,
    res: CommandResult,
    props: { responseTopic?: string; correlationData?: Uint8Array },
  ) => {
    const topic = replyTopic(command, props.responseTopic);
    cl.publish(topic, JSON.stringify(res), {
      qos: 1,
      properties: props.correlationData
        ? { correlationData: Buffer.from(props.correlationData) }
        : undefined,
    });
  };

  const onMessage = (
    topic: string,
    payload: Uint8Array,
    props: { responseTopic?: string; correlationData?: Uint8Array },
  ) => {
    if (topic.startsWith(cmdPrefix)) {
      const command = topic.slice(cmdPrefix.length);
      if (command.includes("/")) return; // results and deeper levels are not requests
      const cl = client;
      commands.handle(command, payload).then((res) => {
        commandsTotal.inc({
          command: commands.names().includes(command) ? command : "unknown",
          outcome: res.ok ? "ok" : "error",
        });
        if (cl && cl === client) answer(cl, command, res, props);
      });
      return;
    }
    if (topic.startsWith(`${prefix}/`)) return; // never loop our own topics back
    if (!c.subscribe.some((f) => topicMatches(f, topic))) return;
    received.inc();
    bus.publish(topic, payload, "mqtt");
  };

  const conn = c.url
    ? new Connection({
      url: c.url,
      clientId: c.client_id ?? deviceId,
      username: c.username,
      password: c.password,
      caFile: c.ca_file,
      certFile: c.cert_file,
      keyFile: c.key_file,
      keepaliveS: c.keepalive_s,
      protocolVersion: c.protocol === "5" ? 5 : 4,
      connectTimeoutMs: c.connect_timeout_s * 1000,
      maxPacketBytes: c.max_packet_bytes,
      onOversized: (p) => {
        oversized.inc();
        log.warning("dropped a {bytes}-byte PUBLISH on {topic}: over mqtt.max_packet_bytes", {
          bytes: p.bytes,
          topic: p.topic ?? "?",
        });
      },
      reconnectMinMs: c.reconnect_min_ms,
      reconnectMaxMs: Math.max(c.reconnect_max_ms, c.reconnect_min_ms),
      will: () => ({ topic: statusTopic, payload: status("offline"), retain: true }),
      onConnect: (cl, connack) => {
        client = cl;
        void publishStatus(cl, "online");
        const subs: Record<string, { qos: 1; nl?: boolean }> = { [`${cmdPrefix}+`]: { qos: 1 } };
        for (const f of c.subscribe) {
          subs[f] = c.protocol === "5" ? { qos: 1, nl: true } : { qos: 1 };
        }
        cl.subscribe(subs, (err) => {
          if (err) log.error("subscribe failed: {error}", { error: err.message });
        });
        uplink.attach(publisherOf(cl), windowFor(c.inflight_window, connack));
      },
      onClose: () => {
        client = null;
        uplink.detach();
      },
      onMessage,
    })
    : null;

  let unsubscribeBus: (() => void) | undefined;
  let removeCommitListener: (() => void) | undefined;
  let housekeeping: ReturnType<typeof setInterval> | undefined;
  let statusTimer: ReturnType<typeof setInterval> | undefined;

  const expire = () => {
    if (c.outbox_max_age_s <= 0 || !store.isOpen) return;
    const cutoff = Date.now() - c.outbox_max_age_s * 1000;
    outbox.expire(cutoff);
    if (c.forward_readings) {
      const upTo = readings.lastIdReceivedBefore(cutoff);
      if (upTo > 0) {
        const before = readings.uplinkedId;
        readings.markUplinked(upTo);
        dropped.inc({ reason: "expired" }, readings.uplinkedId - before);
      }
    }
  };

  return {
    name: "mqtt",
    prefix,
    async start() {
      const unknown = c.commands.allow.filter((n) => !commands.names().includes(n));
      if (unknown.length > 0) {
        log.warning("mqtt.commands.allow names commands this edged does not have: {unknown}", {
          unknown: unknown.join(", "),
        });
      }
      unsubscribeBus = bus.addSink(outbox.sink);
      if (c.forward_readings) {
        removeCommitListener = readings.addCommitListener((id?: number) =>
          uplink.readingsDurable(id)
        );
      }
      expire();
      housekeeping = setInterval(expire, 1000);
      statusTimer = setInterval(() => {
        if (client) void publishStatus(client, "online");
      }, c.status_interval_s * 1000);
      if (conn) await conn.start();
      else log.info("no mqtt.url configured: uplink waits on disk");
    },
    async stop() {
      unsubscribeBus?.();
      removeCommitListener?.();
      clearInterval(housekeeping);
      clearInterval(statusTimer);
      await outbox.flush();
      if (conn) {
        await conn.stop(async (cl) => {
          // A clean DISCONNECT discards the will (MQTT 3.1.1 section
          // 3.14.4), so say offline ourselves, retained.
          await Promise.race([
            publishStatus(cl, "offline"),
            new Promise((r) => setTimeout(r, 1000)),
          ]);
        });
      }
      client = null;
      uplink.close();
    },
    notReady: () => [],
    registerCommand: (name, handler) => commands.register(name, handler),
    setStatusProvider: (p) => {
      statusProvider = p;
    },
    refreshStatus: () => {
      if (client) void publishStatus(client, "online");
    },
  };
}

/** Whether `topic` is a valid topic at least two levels below `cmdPrefix` (`PREFIX/cmd/`). */
export function isReplyTopic(topic: string, cmdPrefix: string): boolean {
  if (!topic.startsWith(cmdPrefix)) return false;
  const rest = topic.slice(cmdPrefix.length);
  const slash = rest.indexOf("/");
  if (slash <= 0) return false;
  try {
    validateTopic(topic);
  } catch {
    return false;
  }
  return true;
}

function safeProvider(p: StatusProvider | undefined): Record<string, unknown> {
  if (!p) return {};
  try {
    return p();
  } catch (err) {
    log.warning("status provider failed: {error}", { error: String(err) });
    return {};
  }
}

/** The in-flight window: ours, within the broker's Receive Maximum (MQTT 5 section 3.2.2.3.3). */
function windowFor(configured: number, connack: IConnackPacket): number {
  const receiveMax = connack.properties?.receiveMaximum ?? 65535;
  // Leave room for status and command results, which share the quota.
  return Math.max(1, Math.min(configured, receiveMax > 4 ? receiveMax - 2 : receiveMax));
}

function publisherOf(cl: MqttClient): Publisher {
  const stream = (cl as unknown as { stream?: { cork?(): void; uncork?(): void } }).stream;
  return {
    cork: () => stream?.cork?.(),
    uncork: () => stream?.uncork?.(),
    publish(topic, payload, onAck) {
      const body = typeof payload === "string"
        ? payload
        : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
      cl.publish(topic, body, { qos: 1 }, (err) => {
        if (!err) return onAck();
        // MQTT 5 section 3.4.2.1: a PUBACK reason code >= 0x80 is a refusal.
        const code = (err as { code?: unknown }).code;
        if (typeof code === "number" && code >= 0x80) return onAck(err);
        // Anything else means the connection is going away: the message was
        // not acknowledged and goes again from the outbox after reconnecting.
        cl.end(true);
      });
    },
  };
}

function registerMetrics(
  metrics: Metrics,
  s: {
    readings: ReadingLog;
    outbox: Outbox;
    uplink: Uplink;
    forward: boolean;
    conn: () => Connection | null;
  },
): void {
  metrics.gauge(
    "edged_mqtt_connected",
    "1 while connected to the broker.",
    [],
    (set) => set(s.uplink.connected ? 1 : 0),
  );
  metrics.counterFunc(
    "edged_mqtt_connects_total",
    "Connections established.",
    () => s.conn()?.connects ?? 0,
  );
  metrics.counterFunc(
    "edged_mqtt_connect_failures_total",
    "Connection attempts that failed.",
    () => s.conn()?.failures ?? 0,
  );
  metrics.gauge(
    "edged_mqtt_outbox_messages",
    "Messages waiting for PUBACK, by stream (readings from the reading log, messages from uplink/#).",
    ["stream"],
    (set) => {
      set(s.forward ? s.readings.pending : 0, { stream: "readings" });
      set(s.outbox.pending, { stream: "messages" });
    },
  );
  metrics.gauge(
    "edged_mqtt_outbox_bytes",
    "Bytes (topics plus payloads) of the module messages waiting in the outbox (capped by mqtt.outbox_max_bytes).",
    [],
    (set) => set(s.outbox.pendingBytes),
  );
  metrics.gauge(
    "edged_mqtt_outbox_oldest_age_seconds",
    "Age of the oldest message waiting for uplink (0 when none).",
    [],
    (set) => {
      const a = s.forward ? s.readings.oldestPendingReceivedMs() : null;
      const b = s.outbox.oldestCreatedMs();
      const oldest = Math.min(a ?? Infinity, b ?? Infinity);
      set(Number.isFinite(oldest) ? Math.max(0, (Date.now() - oldest) / 1000) : 0);
    },
  );
  metrics.gauge(
    "edged_mqtt_inflight_messages",
    "QoS 1 messages sent and not yet acknowledged.",
    [],
    (set) => set(s.uplink.inflight),
  );
  metrics.counterFunc(
    "edged_mqtt_sent_total",
    "QoS 1 uplink PUBLISHes sent (including resends).",
    () => s.uplink.stats.sent,
  );
  metrics.counterFunc(
    "edged_mqtt_acked_total",
    "Uplink PUBLISHes acknowledged by PUBACK.",
    () => s.uplink.stats.acked,
  );
  metrics.counterFunc(
    "edged_mqtt_retried_total",
    "Uplink PUBLISHes sent again after a connection dropped before their PUBACK.",
    () => s.uplink.stats.retried,
  );
  metrics.gauge(
    "edged_mqtt_replay_messages_per_second",
    "Rate of the last backlog replay after a (re)connect, end to end to PUBACK.",
    [],
    (set) => set(s.uplink.stats.lastReplayRate),
  );
}
