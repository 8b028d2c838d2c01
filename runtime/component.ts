/**
 * What a part of the runtime (sandbox, MQTT, updater, ...) plugs in with.
 *
 * @module
 */
import type { Hono } from "hono";
import type { Bus } from "./bus.ts";
import type { Config } from "./config_schema.ts";
import type { Metrics } from "./metrics.ts";
import type { ReadingLog } from "./readings.ts";
import type { Store } from "./store.ts";

/** A part of the runtime with a lifecycle, readiness and optional routes. */
export interface Component {
  /** Short name used in logs and readiness reasons. */
  name: string;
  /** Starts the component; `/readyz` stays 503 until every start resolved. */
  start?(): Promise<void>;
  /** Stops it during shutdown (components stop in reverse start order). */
  stop?(): Promise<void>;
  /** Reasons it is not ready; empty when ready. */
  notReady?(): string[];
  /** Sub-apps to mount; paths under /api/v1/ are bearer-protected. */
  routes?: { path: string; app: Hono }[];
}

/** The shared services every component is built from. */
export interface RuntimeContext {
  config: Config;
  /** Absolute data directory. */
  dataDir: string;
  store: Store;
  bus: Bus;
  metrics: Metrics;
  readings: ReadingLog;
  /** Asks the process to shut down with `code` (e.g. to restart into an update). */
  requestExit: (code: number, reason: string) => void;
  /**
   * Aborted when the shutdown begins, before in-flight requests are awaited:
   * long work (a download) stops here so that those requests can finish.
   */
  stopping?: AbortSignal;
  /** The process's readiness reasons (what /readyz reports); empty when ready. Set once the components exist. */
  readiness?: () => string[];
}
