/**
 * The OPC UA adapter: one server, one session, one subscription whose
 * monitored items are the configured points. Data changes become readings
 * (with their source timestamps) through the framework's sink; bad status
 * codes are counted per point; `write` writes a writable point's node.
 *
 * node-opcua itself is loaded by {@linkcode OpcuaAdapter.start} with a
 * dynamic `import()`, never by importing this module.
 *
 * @module
 */
import { getLogger } from "../../lib/mod.ts";
import type {
  Adapter,
  AdapterErrorKind,
  AdapterEvent,
  AdapterReading,
  AdapterSink,
  AdapterState,
  AdapterStatus,
  PointStatus,
  PointValue,
} from "../adapters/mod.ts";
import { AdapterError } from "../adapters/mod.ts";
import { backoffDelay } from "../mqtt/mod.ts";
import type { OpcuaAdapterConfig } from "../../runtime/mod.ts";
import { ServerTrust } from "./trust.ts";
import {
  type ClientCertificate,
  loadClientCertificate,
  loadUserCertificate,
} from "./certificates.ts";
import type { DecodedValue, Driver, DriverHandlers, Identity } from "./_driver.ts";

const log = getLogger(["edged", "opcua"]);

/** Values waiting for the sink at most; beyond, the oldest are dropped (counted). */
const MAX_BUFFERED = 100_000;
/** Readings handed to the sink in one call at most. */
const MAX_BATCH = 5_000;
/** Delay before offering values again after the sink refused them. */
const RETRY_INGEST_MS = 1_000;
/** The keep-alive period asked of the server (a publish even without changes). */
const KEEPALIVE_TARGET_MS = 5_000;

/** Options for {@linkcode OpcuaAdapter}. */
export interface OpcuaAdapterOptions {
  /** Where a generated client certificate is kept (`{dataDir}/opcua/{name}/`). */
  dataDir: string;
}

/** Extra counters of an OPC UA adapter beside the contract's. */
export interface OpcuaAdapterStatus extends AdapterStatus {
  /** The endpoint and security actually configured. */
  endpoint: string;
  security_mode: string;
  security_policy: string;
  /** SHA-256 of edged's application instance certificate (what the server must trust). */
  client_certificate_sha256: string | null;
  /** Values dropped because the reading log refused them for too long. */
  dropped: number;
  /** Values waiting for the reading log. */
  buffered: number;
}

interface PointState extends PointStatus {
  node_id: string;
  /** The last status code name seen, e.g. `BadSensorFailure`. */
  last_status: string | null;
  bad_status: number;
}

type ErrorRecord = { kind: AdapterErrorKind; message: string; time: number };

/**
 * One `[[adapters.opcua]]` block as an {@linkcode Adapter}.
 *
 * @example
 * ```ts ignore
 * const adapter = new OpcuaAdapter(config, { dataDir: "/var/lib/edged" });
 * await adapter.start({ ingest: (r) => readingLog.append(...), signal });
 * await adapter.write("setpoint", 42.5);
 * ```
 */
export class OpcuaAdapter implements Adapter {
  readonly name: string;
  readonly kind = "opcua";
  observe?: (event: AdapterEvent) => void;

  #cfg: OpcuaAdapterConfig;
  #opts: OpcuaAdapterOptions;
  #points: PointState[];
  #byMetric = new Map<string, number>();
  #state: AdapterState = "stopped";
  #lastPoll: number | null = null;
  #lastError: ErrorRecord | null = null;
  #readings = 0;
  #errors = 0;
  #reconnects = 0;
  #dropped = 0;
  #buffer: AdapterReading[] = [];
  #ingesting = false;
  #flushing?: Promise<void>;
  #retryTimer?: ReturnType<typeof setTimeout>;
  #sink?: AdapterSink;
  #driver?: Driver;
  #stop = new AbortController();
  #loop?: Promise<void>;
  #lastAlive = 0;
  #clientSha: string | null = null;

  /** Builds the adapter from its validated configuration (nothing is opened yet). */
  constructor(config: OpcuaAdapterConfig, options: OpcuaAdapterOptions) {
    this.name = config.name;
    this.#cfg = config;
    this.#opts = options;
    this.#points = config.points.map((p, i) => {
      this.#byMetric.set(p.metric, i);
      return {
        metric: p.metric,
        node_id: p.node_id,
        writable: p.writable,
        last_value: null,
        last_time: null,
        last_error: null,
        last_status: null,
        reads: 0,
        errors: 0,
        writes: 0,
        bad_status: 0,
      };
    });
  }

  /** The keep-alive count that gives about {@linkcode KEEPALIVE_TARGET_MS} between publishes. */
  get #keepAliveCount(): number {
    return Math.max(
      1,
      Math.min(1000, Math.ceil(KEEPALIVE_TARGET_MS / this.#cfg.publishing_interval_ms)),
    );
  }

  /**
   * Reads the certificates and trust settings (a missing or bad file fails
   * here, naming the setting), then connects in the background: an
   * unreachable server is a state, not a failed start.
   */
  async start(sink: AdapterSink): Promise<void> {
    if (this.#loop) throw new Error(`adapter ${this.name} already started`);
    this.#sink = sink;
    const cfg = this.#cfg;
    const trust = await this.#setting(
      cfg.server_certificate_file
        ? "server_certificate_file"
        : cfg.trusted_certificates_dir
        ? "trusted_certificates_dir"
        : "server_certificate_sha256",
      () =>
        ServerTrust.load({
          sha256: cfg.server_certificate_sha256,
          file: cfg.server_certificate_file,
          dir: cfg.trusted_certificates_dir,
        }),
    );
    // The library is loaded only now, only because this adapter is configured.
    const driver = await import("./_driver.ts");
    const own: ClientCertificate = await this.#setting(
      cfg.certificate_file ? "certificate_file" : "data_dir",
      () => loadClientCertificate(cfg, this.#opts.dataDir, driver.generateCertificate),
    );
    this.#clientSha = own.sha256;
    let identity: Identity = { type: "anonymous" };
    if (cfg.username !== undefined) {
      identity = { type: "username", username: cfg.username, password: cfg.password ?? "" };
    } else if (cfg.user_certificate_file && cfg.user_private_key_file) {
      const user = await this.#setting(
        "user_certificate_file",
        () => loadUserCertificate(cfg.user_certificate_file!, cfg.user_private_key_file!),
      );
      identity = { type: "certificate", ...user };
    }
    sink.signal.addEventListener("abort", () => this.#stop.abort(), { once: true });
    this.#state = "connecting";
    this.#loop = this.#run(driver, trust, own, identity);
  }

  async #setting<T>(setting: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (err) {
      throw new Error(
        `adapter '${this.name}' (opcua): setting '${setting}': ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  async #run(
    lib: typeof import("./_driver.ts"),
    trust: ServerTrust,
    own: ClientCertificate,
    identity: Identity,
  ): Promise<void> {
    const cfg = this.#cfg;
    const signal = this.#stop.signal;
    let attempt = 0;
    let everConnected = false;
    while (!signal.aborted) {
      this.#state = "connecting";
      const started = performance.now();
      let lostReason: string | undefined;
      try {
        const handlers: DriverHandlers = {
          value: (i, v) => this.#onValue(i, v),
          itemError: (i, status) =>
            this.#pointError(i, "bad_status", `monitored item refused: ${status}`),
          alive: () => {
            this.#lastAlive = performance.now();
            this.#lastPoll = Date.now();
          },
          lost: (reason) => {
            this.#state = "connecting";
            this.#adapterError("connection", `${reason}; re-establishing the session`);
          },
          restored: () => {
            this.#state = "connected";
            this.#reconnects++;
            this.#lastAlive = performance.now();
            log.info("opcua {name}: connection re-established", { name: this.name });
          },
        };
        this.#driver = await lib.openDriver({
          endpoint: cfg.endpoint,
          securityMode: cfg.security_mode,
          securityPolicy: cfg.security_policy,
          applicationUri: own.applicationUri,
          certificateDer: own.certificateDer,
          privateKeyPem: own.privateKeyPem,
          identity,
          trust,
          nodeIds: cfg.points.map((p) => p.node_id),
          publishingIntervalMs: cfg.publishing_interval_ms,
          samplingIntervalMs: cfg.sampling_interval_ms ?? cfg.publishing_interval_ms,
          queueSize: cfg.queue_size,
          keepAliveCount: this.#keepAliveCount,
          timeoutMs: cfg.timeout_ms,
          reconnectMinMs: cfg.reconnect_min_ms,
          reconnectMaxMs: cfg.reconnect_max_ms,
          handlers,
        });
        if (signal.aborted) break;
        if (everConnected) this.#reconnects++;
        everConnected = true;
        attempt = 0;
        this.#state = "connected";
        this.#lastAlive = performance.now();
        this.observe?.({ type: "poll", seconds: (performance.now() - started) / 1000, ok: true });
        log.info("opcua {name}: subscribed to {n} nodes at {endpoint} ({mode})", {
          name: this.name,
          n: cfg.points.length,
          endpoint: cfg.endpoint,
          mode: `${cfg.security_mode}/${cfg.security_policy}`,
        });
        lostReason = await this.#watch();
      } catch (err) {
        const e = err as Error;
        const kind: AdapterErrorKind = e instanceof lib.UntrustedServerError
          ? "security"
          : e instanceof lib.TimeoutError
          ? "timeout"
          : /Bad(SecurityChecksFailed|Certificate\w*|Identity\w*|User\w*|Security\w*)|Cannot find an Endpoint|user token policy/i
              .test(e.message)
          ? "security"
          : "connection";
        // node-opcua's messages span lines; one line reads better in logs and the API.
        let message = `cannot connect to ${cfg.endpoint}: ${e.message.replace(/\s*\n\s*/g, " ")}`;
        if (
          /BadSecurityChecksFailed|BadCertificateUntrusted|BadCertificateInvalid/.test(e.message)
        ) {
          message +=
            `; does the server trust edged's certificate ${own.path} (sha256 ${own.sha256})?`;
        }
        this.#adapterError(kind, message);
        this.observe?.({ type: "poll", seconds: (performance.now() - started) / 1000, ok: false });
      }
      const driver = this.#driver;
      this.#driver = undefined;
      if (driver) await driver.close();
      if (signal.aborted) break;
      if (lostReason) this.#adapterError("connection", lostReason);
      this.#state = "backoff";
      const delay = backoffDelay(attempt++, {
        minMs: cfg.reconnect_min_ms,
        maxMs: cfg.reconnect_max_ms,
      });
      await this.#sleep(delay);
    }
    this.#state = "stopped";
  }

  /**
   * Resolves with a reason once the subscription has been silent for three
   * keep-alive periods (node-opcua's own repair did not bring it back), or
   * with undefined when the adapter stops.
   */
  async #watch(): Promise<string | undefined> {
    const periodMs = this.#keepAliveCount * this.#cfg.publishing_interval_ms;
    const limitMs = 3 * periodMs + this.#cfg.timeout_ms;
    const tick = Math.min(1000, periodMs);
    while (!this.#stop.signal.aborted) {
      await this.#sleep(tick);
      if (performance.now() - this.#lastAlive > limitMs) {
        return `no publish response for ${limitMs} ms; starting a new session`;
      }
    }
    return undefined;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const signal = this.#stop.signal;
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done, { once: true });
    });
  }

  #onValue(i: number, v: DecodedValue): void {
    const p = this.#points[i];
    if (!p) return;
    p.last_status = v.status;
    if (v.severity === "bad") {
      p.bad_status++;
      this.#pointError(i, "bad_status", v.status);
      return;
    }
    if (v.value === null) {
      this.#pointError(i, "decode", `value of type ${v.type} is not a number or boolean`);
      return;
    }
    p.reads++;
    p.last_value = v.value;
    p.last_time = v.timestamp;
    if (v.severity === "good") p.last_error = null;
    if (this.#buffer.length >= MAX_BUFFERED) this.#drop(1);
    this.#buffer.push({ metric: p.metric, value: v.value, timestamp: v.timestamp });
    this.#flushSoon();
  }

  /** Gives up the `n` oldest buffered values (the reading log refused them for too long). */
  #drop(n: number): void {
    const before = this.#dropped;
    this.#buffer.splice(0, n);
    this.#dropped += n;
    this.observe?.({ type: "dropped", count: n });
    if (before === 0 || Math.floor(before / 1000) !== Math.floor(this.#dropped / 1000)) {
      log.warning("opcua {name}: the reading log refuses values; {n} dropped so far", {
        name: this.name,
        n: this.#dropped,
      });
    }
  }

  #flushSoon(): void {
    if (this.#ingesting || this.#retryTimer !== undefined) return;
    this.#ingesting = true;
    this.#flushing = Promise.resolve().then(() => this.#flush());
  }

  /** Hands buffered values to the sink, one batch at a time, in arrival order. */
  async #flush(): Promise<void> {
    const sink = this.#sink!;
    while (this.#buffer.length > 0) {
      const batch = this.#buffer.splice(0, MAX_BATCH);
      const started = performance.now();
      try {
        await sink.ingest(batch);
      } catch (err) {
        // Offered again later, ahead of what arrived meanwhile.
        this.#buffer = batch.concat(this.#buffer);
        const excess = this.#buffer.length - MAX_BUFFERED;
        if (excess > 0) this.#drop(excess);
        this.#adapterError(
          "full",
          `the reading log refused values: ${(err as Error).message}`,
        );
        this.#ingesting = false;
        if (this.#stop.signal.aborted) return;
        this.#retryTimer = setTimeout(() => {
          this.#retryTimer = undefined;
          this.#flushSoon();
        }, RETRY_INGEST_MS);
        return;
      }
      this.#readings += batch.length;
      this.observe?.({ type: "readings", count: batch.length });
      this.observe?.({ type: "poll", seconds: (performance.now() - started) / 1000, ok: true });
    }
    this.#ingesting = false;
  }

  #pointError(i: number, kind: AdapterErrorKind, message: string): void {
    const p = this.#points[i];
    const record = { kind, message, time: Date.now() };
    p.errors++;
    p.last_error = record;
    this.#errors++;
    this.observe?.({ type: "error", kind, metric: p.metric });
  }

  #adapterError(kind: AdapterErrorKind, message: string): void {
    const again = this.#lastError?.message === message;
    this.#lastError = { kind, message, time: Date.now() };
    this.#errors++;
    this.observe?.({ type: "error", kind });
    if (!again) log.warning("opcua {name}: {message}", { name: this.name, message });
  }

  /** Writes a writable point's node, converted to the node's data type. */
  async write(metric: string, value: PointValue): Promise<void> {
    const i = this.#byMetric.get(metric);
    if (i === undefined) {
      throw new AdapterError("unknown_point", `adapter ${this.name} has no point '${metric}'`);
    }
    const p = this.#points[i];
    if (!p.writable) {
      throw new AdapterError(
        "not_writable",
        `point '${metric}' is not writable (writable = false)`,
      );
    }
    if (typeof value !== "boolean" && (typeof value !== "number" || !Number.isFinite(value))) {
      throw new AdapterError("invalid_value", `value must be a finite number or a boolean`);
    }
    const driver = this.#driver;
    if (!driver || this.#state !== "connected") {
      const err = new AdapterError("connection", `not connected to ${this.#cfg.endpoint}`);
      this.#pointError(i, err.kind, err.message);
      throw err;
    }
    let outcome;
    try {
      outcome = await driver.write(i, value);
    } catch (e) {
      const err = new AdapterError(
        (e as Error).name === "TimeoutError" ? "timeout" : "connection",
        `write to ${p.node_id} failed: ${(e as Error).message}`,
        { cause: e },
      );
      this.#pointError(i, err.kind, err.message);
      throw err;
    }
    if (!outcome.ok) {
      this.#pointError(i, outcome.kind, outcome.message);
      throw new AdapterError(outcome.kind, outcome.message);
    }
    p.writes++;
  }

  /** Stops the subscription and closes the session and channel. */
  async stop(): Promise<void> {
    this.#stop.abort();
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    await this.#loop;
    // What arrived before the session closed is committed before stop resolves.
    await this.#flushing;
    if (this.#buffer.length > 0) {
      log.warning("opcua {name}: stopped with {n} values the reading log did not take", {
        name: this.name,
        n: this.#buffer.length,
      });
    }
    this.#state = "stopped";
  }

  /** Counters, state and last outcome, per adapter and per point. */
  status(): OpcuaAdapterStatus {
    return {
      name: this.name,
      kind: this.kind,
      device_id: this.#cfg.device_id ?? this.name,
      state: this.#state,
      last_poll: this.#lastPoll,
      last_error: this.#lastError,
      readings: this.#readings,
      errors: this.#errors,
      reconnects: this.#reconnects,
      endpoint: this.#cfg.endpoint,
      security_mode: this.#cfg.security_mode,
      security_policy: this.#cfg.security_policy,
      client_certificate_sha256: this.#clientSha,
      dropped: this.#dropped,
      buffered: this.#buffer.length,
      points: this.#points.map((p) => ({ ...p })),
    };
  }
}
