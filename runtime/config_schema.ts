/**
 * The configuration schema: one strict zod object per section (`http`,
 * `store`, `mqtt` with its `commands`, `update`, `modules`, `nn`; `adapters`
 * from `adapters_config.ts`), every key with its bounds and its default, so
 * nothing unknown or out of range passes. `config.ts` layers the sources over
 * it; `config_settings.ts` lists its keys.
 *
 * @module
 */
import { z } from "zod";
import { adaptersSchema } from "./adapters_config.ts";
import { NAME_RE, parseListen, TOKEN_RE } from "./config_rules.ts";

export { NAME_RE, parseListen, TOKEN_RE } from "./config_rules.ts";

/** host:port, with IPv6 hosts in brackets. */
const listenSchema = z.string().refine((v) => parseListen(v) !== null, {
  message: "must be HOST:PORT with a port from 0 to 65535 (IPv6 as [::1]:8080)",
});

const httpSchema = z.strictObject({
  /** Largest request body accepted; larger ones get 413. */
  body_limit_bytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
  /** Most readings in one POST /api/v1/data. */
  max_batch: z.number().int().min(1).max(100_000).default(1000),
  /**
   * How far in the future a reading's timestamp may lie (not checked while
   * the system clock is not set: see `CLOCK_SET_AFTER_MS` in lib/clock.ts).
   */
  max_future_skew_s: z.number().int().min(0).max(366 * 86400).default(86400),
  /**
   * Open connections at most (lowered to fit the open-file limit); at the cap a
   * new connection replaces the one idle longest, or gets 503.
   */
  max_connections: z.number().int().min(1).max(1_000_000).default(1024),
  /** Seconds for a request's line and headers to arrive; slower clients are closed. */
  header_timeout_s: z.number().min(0.1).max(3600).default(10),
  /** Seconds a connection may sit without a request, or a body or answer without progress. */
  idle_timeout_s: z.number().min(0.1).max(3600).default(30),
  /** Seconds for a whole request, body included, to arrive. */
  request_timeout_s: z.number().min(1).max(86400).default(300),
});

const storeSchema = z.strictObject({
  /** Readings that may wait for uplink before ingest answers 503. */
  max_pending_readings: z.number().int().min(1).max(1_000_000_000).default(1_000_000),
  /** Uplinked readings kept on disk before pruning. */
  retain_uplinked: z.number().int().min(0).max(1_000_000_000).default(10_000),
});

/**
 * Commands a device answers out of the box: none of them removes anything,
 * downgrades or writes a machine (`module-remove` and `adapter-write` answer
 * only where `mqtt.commands.allow` lists them).
 */
export const DEFAULT_ALLOWED_COMMANDS: readonly string[] = [
  "ping",
  "update-check",
  "module-deploy",
  "model-deploy",
];

const commandsSchema = z.strictObject({
  /** Commands answered on `PREFIX/cmd/{command}`; any other known one gets `command_not_allowed`. */
  allow: z.array(z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "must be a command name"))
    .default([...DEFAULT_ALLOWED_COMMANDS]),
  /** Whether `update-check` may install what it finds (`"apply": true`) with `update.auto_apply` off. */
  allow_apply: z.boolean().default(false),
  /** Whether `module-deploy` and `model-deploy` may install an older version than the one installed. */
  allow_downgrade: z.boolean().default(false),
  /** Requests per minute each command answers (a burst of as many); more get `rate_limited`. */
  rate_per_minute: z.number().int().min(1).max(60_000).default(30),
});

const mqttSchema = z.strictObject({
  /** Broker URL; unset means no broker (uplink waits on disk). */
  url: z.string().regex(
    /^(mqtts?|wss?):\/\/[^\s]+$/,
    "must be an mqtt://, mqtts://, ws:// or wss:// URL",
  ).optional(),
  username: z.string().optional(),
  password: z.string().optional(),
  /** PEM file with the CA certificates that sign the broker's certificate. */
  ca_file: z.string().optional(),
  /** PEM client certificate for mutual TLS. */
  cert_file: z.string().optional(),
  /** PEM private key for `cert_file`. */
  key_file: z.string().optional(),
  /** MQTT client id; defaults to the device id. */
  client_id: z.string().min(1).max(256).optional(),
  keepalive_s: z.number().int().min(0).max(65535).default(30),
  /** Topic prefix; defaults to `edged/{device_id}`. */
  topic_prefix: z.string().min(1).optional(),
  /** Whether ingested readings go up as `PREFIX/up/sensors/...`. */
  forward_readings: z.boolean().default(true),
  /** Broker topic filters whose messages are fed into the bus. */
  subscribe: z.array(z.string().min(1)).default([]),
  /** MQTT protocol version spoken to the broker. */
  protocol: z.enum(["3.1.1", "5"]).default("5"),
  /** Seconds to wait for CONNACK before trying again. */
  connect_timeout_s: z.number().min(1).max(600).default(10),
  /** First reconnect delay; doubles (with jitter) up to `reconnect_max_ms`. */
  reconnect_min_ms: z.number().int().min(10).max(600_000).default(500),
  /** Longest reconnect delay. */
  reconnect_max_ms: z.number().int().min(10).max(3_600_000).default(30_000),
  /** QoS 1 messages sent and not yet acknowledged (capped by the broker's Receive Maximum). */
  inflight_window: z.number().int().min(1).max(65535).default(1000),
  /** Bus messages (from `uplink/#`) that may wait in the outbox; readings use `store.max_pending_readings`. */
  outbox_max_messages: z.number().int().min(1).max(1_000_000_000).default(1_000_000),
  /** Bytes (topics plus payloads) of bus messages that may wait in the outbox, beside the message cap. */
  outbox_max_bytes: z.number().int().min(1024).max(Number.MAX_SAFE_INTEGER).default(
    256 * 1024 * 1024,
  ),
  /**
   * Messages and readings older than this are dropped unsent (counted); 0 keeps them forever.
   * Age is the time waited on this device: a step of the system clock (NTP) moves the receive
   * times of what waits with it, and what was received while the clock read before 2026 has no
   * age (it stays, and keeps what came after it).
   */
  outbox_max_age_s: z.number().int().min(0).max(10 * 366 * 86400).default(0),
  /** When full (messages or bytes): `refuse-new` (ingest answers 503, module messages are refused) or `drop-oldest`. */
  outbox_policy: z.enum(["refuse-new", "drop-oldest"]).default("refuse-new"),
  /** Seconds between refreshes of the retained status (uptime). */
  status_interval_s: z.number().int().min(1).max(86400).default(60),
  /**
   * Largest packet taken from the broker: declared as Maximum Packet Size in an
   * MQTT 5 CONNECT, and larger PUBLISHes are dropped unread with either version.
   */
  max_packet_bytes: z.number().int().min(1024).max(268_435_455).default(1_048_576),
  /** Who may do what over `PREFIX/cmd/` (docs/operators.md, "Trust"). */
  commands: commandsSchema.default(commandsSchema.parse({})),
});

const updateSchema = z.strictObject({
  /** Update repository base URL; unset means no update server. */
  url: z.string().regex(/^https?:\/\/[^\s]+$/, "must be an http:// or https:// URL").optional(),
  /** Seconds between update checks (jittered). */
  check_interval_s: z.number().int().min(10).max(30 * 86400).default(3600),
  /** The repository's trusted root.json shipped with the device (TUF 5.2); read once. */
  root: z.string().min(1).optional(),
  /** Install what a periodic check finds (else only report it). */
  auto_apply: z.boolean().default(true),
  /** Download bandwidth limit in bytes per second; 0 means none. */
  rate_limit_bytes_per_s: z.number().int().min(0).max(10_000_000_000).default(0),
  /** Token-bucket burst in bytes (how much may pass at once after a pause). */
  burst_bytes: z.number().int().min(1024).max(1_000_000_000).default(262_144),
  /** Download attempts in a row without progress before giving up. */
  retries: z.number().int().min(0).max(100).default(6),
  /** Seconds without a byte before a request (metadata or download) fails (slow server). */
  timeout_s: z.number().min(1).max(3600).default(30),
  /**
   * Lowest average download rate in bytes per second: a download not complete within
   * `timeout_s` plus its size at this rate is given up (and resumed by the next attempt).
   * At most half of `rate_limit_bytes_per_s` when that is set.
   */
  min_rate_bytes_per_s: z.number().int().min(1).max(1_000_000_000).default(8192),
  /** Seconds a new version has to become healthy before it is rolled back. */
  boot_deadline_s: z.number().min(1).max(3600).default(120),
  /** Starts of a new version that may fail before it is rolled back. */
  max_boot_attempts: z.number().int().min(1).max(100).default(3),
  /** This executable, adopted as slot A on the first supervised start (default: itself when compiled). */
  binary: z.string().min(1).optional(),
  /** Target triple of the releases to take (default: this build's). */
  triple: z.string().regex(/^[A-Za-z0-9_.-]+$/, "must be a target triple").optional(),
});

const modulesSchema = z.strictObject({
  /** Module folders (manifest.json + module.wasm) installed at start unless already installed. */
  preload: z.array(z.string().min(1)).default([]),
  /** Messages a module holds in memory ahead of its Worker; beyond, they wait in their durable log. */
  queue_capacity: z.number().int().min(1).max(1_000_000).default(256),
  /** Payload bytes a module holds in memory ahead of its Worker (one message always fits); beyond, they wait in their durable log. */
  queue_bytes: z.number().int().min(1024).max(1 << 30).default(8 * 1024 * 1024),
  /** Payload bytes the queues of all modules hold together: each module's share is this over how many run, at most `queue_bytes` (one message always fits); beyond, they wait in their durable log. */
  queue_bytes_total: z.number().int().min(1024).max(2 ** 40).default(64 * 1024 * 1024),
  /**
   * Log entries (readings, or other messages) a module may fall behind before it skips ahead
   * to half as many, counting and logging what it skipped. At most `store.max_pending_readings`:
   * left at its default, it is lowered to that when the cap is smaller.
   */
  max_lag: z.number().int().min(1).max(1_000_000_000).default(100_000),
  /**
   * Bytes (topics and payloads) the modules' message log may hold for modules that are behind;
   * past it, the furthest behind skip ahead until it holds half as much, counting and logging
   * what they skipped.
   */
  message_log_bytes: z.number().int().min(1 << 20).max(2 ** 40).default(256 * 1024 * 1024),
  /** Consecutive faults that put a module in quarantine. */
  fault_limit: z.number().int().min(1).max(1000).default(3),
  /** First quarantine back-off in milliseconds; doubles up to 5 minutes. */
  quarantine_ms: z.number().int().min(1).max(300_000).default(1000),
  /** Log lines per second a module may write to the device log (burst 5x). */
  log_lines_per_second: z.number().int().min(1).max(100_000).default(20),
  /** Milliseconds per second of the main thread one module's kv and sensor calls may take (a Worker's modules together: 4x); past it they answer QUOTA. */
  thread_ms_per_second: z.number().int().min(1).max(1000).default(50),
  /** Workers (threads without permissions) that run module code, many modules each. */
  workers: z.number().int().min(1).max(64).default(2),
  /**
   * Memory the installed modules may use together: the sum of their manifests'
   * `limits.memory_bytes`. An install past it is refused (507 `module_memory_budget`).
   * Unset: half of the device's memory (or of edged's cgroup memory limit, if lower).
   */
  memory_budget_bytes: z.number().int().min(65536).max(2 ** 50).optional(),
});

const MIB = 1024 * 1024;
const nnSchema = z.strictObject({
  /** Cap of the inference engine's memory (its wasm heap: models and activations). */
  memory_bytes: z.number().int().min(32 * MIB).max(4096 * MIB - 65536).default(256 * MIB),
  /** Longest one WASI-NN compute may keep a module waiting. */
  deadline_ms: z.number().int().min(1).max(60_000).default(1000),
  /** Fuel a compute is charged per millisecond of the model's work (measured at install). */
  fuel_per_ms: z.number().int().min(1).max(1_000_000_000).default(1_000_000),
  /** Element limit of a model's tensors unless its install sets one. */
  max_elements: z.number().int().min(1).max(256 * MIB).default(MIB),
  /** Largest model file accepted. */
  max_model_bytes: z.number().int().min(1).max(1024 * MIB).default(128 * MIB),
  /** The engine stops this many seconds after the last module granted nn is gone. */
  idle_stop_s: z.number().min(0).max(86_400).default(60),
});

/** The whole configuration schema. */
export const configSchema = z.strictObject({
  data_dir: z.string().min(1).default("./data"),
  listen: listenSchema.default("127.0.0.1:8080"),
  /** Bearer token for /api/v1/; generated and stored in the data dir when unset. */
  api_token: z.string().min(16, "must be at least 16 characters").max(512)
    .regex(TOKEN_RE, "must be visible ASCII: no spaces, tabs or control characters").optional(),
  /** This device's id; defaults to the host name. */
  device_id: z.string().regex(NAME_RE, "must be 1-128 of A-Z a-z 0-9 . _ - starting alphanumeric")
    .optional(),
  log_level: z.enum(["debug", "info", "warning", "error"]).default("info"),
  /** `auto` writes JSON lines unless stdout is a terminal. */
  log_format: z.enum(["auto", "json", "text"]).default("auto"),
  /** Seconds a graceful shutdown may take before edged exits anyway. */
  shutdown_timeout_s: z.number().min(0.1).max(600).default(10),
  http: httpSchema.default(httpSchema.parse({})),
  store: storeSchema.default(storeSchema.parse({})),
  mqtt: mqttSchema.default(mqttSchema.parse({})),
  update: updateSchema.default(updateSchema.parse({})),
  modules: modulesSchema.default(modulesSchema.parse({})),
  /** Southbound adapters: `[[adapters.modbus]]` blocks (TOML only). */
  adapters: adaptersSchema.default(adaptersSchema.parse({})),
  nn: nnSchema.default(nnSchema.parse({})),
});

/** The validated configuration. */
export type Config = z.infer<typeof configSchema> & { device_id: string };
