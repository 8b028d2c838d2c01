/**
 * The contract between the southbound adapter framework (`protocols/adapters/`)
 * and one protocol's adapter (`protocols/modbus/`, `protocols/opcua/`).
 *
 * An adapter talks to one machine. The framework builds it from its validated
 * configuration block, starts and stops it as a component, hands it a
 * {@linkcode AdapterSink} that makes readings durable through the same reading
 * log as `POST /api/v1/data`, routes `devices/{adapter}/{metric}/set` bus
 * messages to {@linkcode Adapter.write}, publishes the outcome on
 * `.../set/result`, and reports {@linkcode Adapter.status} in
 * `GET /api/v1/adapters`, `/readyz`, the dashboard and `/metrics`.
 *
 * @module
 */
import { EdgedError } from "../../lib/mod.ts";

/** A value read from or written to a point. Booleans become readings 1 and 0. */
export type PointValue = number | boolean;

/** One value of one point, ready for the reading log. */
export interface AdapterReading {
  /** The point's `metric`; the reading's device is the adapter's `device_id`. */
  metric: string;
  /** The scaled value (booleans as 1/0). */
  value: number;
  /** UTC milliseconds: the source timestamp where the protocol gives one, else the read time. */
  timestamp: number;
}

/** Why an operation on a point or an adapter failed, by kind (a metric label). */
export type AdapterErrorKind =
  | "timeout"
  | "connection"
  | "exception"
  | "bad_status"
  | "decode"
  | "not_writable"
  | "invalid_value"
  | "unknown_point"
  | "security"
  /** Too many writes wait for the device already. */
  | "busy"
  /** The reading log refused the readings (its pending cap is reached). */
  | "full"
  /** A bus message not allowed to write (a broker message, not a module). */
  | "forbidden";

/** The HTTP status each kind answers with, wherever an adapter error is rendered. */
const KIND_STATUS: Readonly<Record<AdapterErrorKind, number>> = {
  timeout: 504,
  connection: 502,
  exception: 502,
  bad_status: 502,
  decode: 502,
  security: 502,
  not_writable: 409,
  invalid_value: 400,
  unknown_point: 404,
  busy: 503,
  full: 503,
  forbidden: 403,
};

/**
 * A failure of an adapter operation, with its protocol's own name for it in
 * `message`. Its `code` is its kind, so the write result, an MQTT command
 * answer and an HTTP answer all name it the same way.
 */
export class AdapterError extends EdgedError {
  /** The kind, for counters and the write result. */
  readonly kind: AdapterErrorKind;
  override readonly code: string;
  override readonly status: number;
  /** Builds the error. */
  constructor(kind: AdapterErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
    this.code = kind;
    this.status = KIND_STATUS[kind];
  }
}

/** What the framework gives an adapter when it starts. */
export interface AdapterSink {
  /**
   * Makes readings durable (one group commit in the reading log). Resolves
   * once committed; rejects when the log refuses (full): the adapter keeps the
   * values and offers them again, it never drops acknowledged data silently.
   */
  ingest(readings: AdapterReading[]): Promise<void>;
  /** Aborted when the adapter is being stopped. */
  signal: AbortSignal;
}

/** Connection state of an adapter. */
export type AdapterState = "connecting" | "connected" | "backoff" | "stopped";

/** Counters and last outcome of one point. */
export interface PointStatus {
  metric: string;
  writable: boolean;
  /** Last value read (scaled), or null before the first. */
  last_value: number | null;
  /** UTC ms of that value, or null. */
  last_time: number | null;
  /** Last error of this point, or null once a later read succeeded. */
  last_error: { kind: AdapterErrorKind; message: string; time: number } | null;
  reads: number;
  errors: number;
  writes: number;
}

/** What `GET /api/v1/adapters` shows for one adapter. */
export interface AdapterStatus {
  name: string;
  kind: string;
  device_id: string;
  state: AdapterState;
  /** UTC ms of the last completed poll or notification, or null. */
  last_poll: number | null;
  last_error: { kind: AdapterErrorKind; message: string; time: number } | null;
  /** Readings handed to the sink and committed. */
  readings: number;
  errors: number;
  reconnects: number;
  /** Where the adapter connects (no credentials), e.g. `tcp://10.0.0.5:502`. */
  endpoint?: string;
  /** Readings given up because the reading log stayed full (counted, oldest first). */
  dropped?: number;
  points: PointStatus[];
}

/** One protocol's adapter for one machine. */
export interface Adapter {
  /** The configured `name` (`[a-z0-9-]+`, unique across all adapters). */
  readonly name: string;
  /** `modbus`, `opcua`, ... */
  readonly kind: string;
  /**
   * Starts reading. Resolves once started, not once connected: an unreachable
   * peer is a state (`connecting`/`backoff`) and a readiness reason, never a
   * failed start.
   */
  start(sink: AdapterSink): Promise<void>;
  /** Stops reading, closes connections; bounded in time. */
  stop(): Promise<void>;
  /** Writes a `writable` point; rejects with an {@linkcode AdapterError}. */
  write(metric: string, value: PointValue): Promise<void>;
  /** The current status (cheap: called on every `/api/v1/adapters` and scrape). */
  status(): AdapterStatus;
  /**
   * Observes each operation for the framework's metrics (optional: the
   * framework sets it before `start`).
   */
  observe?: (event: AdapterEvent) => void;
}

/** One operation, as the framework's metrics see it. */
export type AdapterEvent =
  | { type: "poll"; seconds: number; ok: boolean }
  | { type: "error"; kind: AdapterErrorKind; metric?: string }
  | { type: "readings"; count: number }
  | { type: "dropped"; count: number };
