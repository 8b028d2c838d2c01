/**
 * The runtime's public surface: process, configuration, HTTP API, store, bus
 * and metrics.
 *
 * @module
 */
export {
  Bus,
  type BusHandler,
  type BusMessage,
  TopicError,
  topicMatches,
  validateFilter,
  validateTopic,
} from "./bus.ts";
export type { Component, RuntimeContext } from "./component.ts";
export {
  type Config,
  ConfigError,
  type ConfigFlags,
  configSchema,
  loadConfig,
  parseListen,
  settings,
} from "./config.ts";
export { ApiError, type ErrorDetail } from "./api/errors.ts";
export { setupLogging } from "./log.ts";
export {
  Counter,
  CounterFunc,
  Gauge,
  Histogram,
  Metrics,
  METRICS_CONTENT_TYPE,
} from "./metrics.ts";
export {
  createProgress,
  formatBytes,
  formatDuration,
  type Progress,
  type ProgressOptions,
  type ProgressStream,
} from "./progress.ts";
export {
  assertUnlocked,
  type DataDirLock,
  DataDirLockedError,
  LAUNCHER_LOCK,
  lockDataDir,
  RUNTIME_LOCK,
} from "./lock.ts";
export { OutboxFullError, type Reading, ReadingLog, type StoredReading } from "./readings.ts";
export { EXIT, runEdged, type RunOptions } from "./run.ts";
export { Store, StoreError } from "./store.ts";
export { type BuildInfo, buildInfo, VERSION } from "./version.ts";
export { runFlags, RUNTIME_PERMISSIONS, UNSTABLE_FLAGS, V8_FLAGS } from "./permissions.ts";
export { syncDir, writeFileAtomic } from "./fs.ts";
