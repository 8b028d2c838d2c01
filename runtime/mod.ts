/**
 * The runtime's services, as a library: configuration, logging, the SQLite
 * store, the durable reading log, the bus, metrics, the data directory's lock
 * and token, the component contract, and the HTTP API's pieces (server, auth,
 * ingest, status, dashboard). It imports `lib/` and nothing of the
 * subsystems; `app/` composes it with them.
 *
 * @module
 */
export { Bus, type BusHandler, type BusMessage, type BusSink, type SinkStager } from "./bus.ts";
export {
  type CommitParticipant,
  FileSyncer,
  followStamps,
  type FollowStampsOptions,
  GroupCommit,
  type Settle,
  type WalSyncer,
} from "./commit.ts";
export type { Component, RuntimeContext } from "./component.ts";
export type { AdaptersConfig, ModbusAdapterConfig, ModbusPointConfig } from "./adapters_config.ts";
export {
  MODBUS_BAUD_RATES,
  MODBUS_TYPE_REGISTERS,
  type ModbusTarget,
  parseModbusUrl,
} from "./modbus_url.ts";
// The configuration, the lock, the umask, logging's setup, the version and the run flags:
// runtime/start.ts, the launcher's lighter entry, has them.
export * from "./start.ts";
export { parseListen } from "./config_rules.ts";
export type { OpcuaAdapterConfig, OpcuaPointConfig } from "./config_opcua.ts";
// The zod schemas themselves (configSchema, adaptersSchema, settings(), ...)
// are in runtime/schema.ts: importing this module does not load zod.
export { ApiError, type ErrorDetail, errorResponse } from "./api/errors.ts";
export { bodyLimit, BodyTooLargeError, defaultBodyLimit } from "./api/body_limit.ts";
export { formWithin } from "./api/form.ts";
export {
  type Api,
  createApi,
  createApp,
  type FastRoute,
  type Route,
  type ServerOptions,
} from "./api/server.ts";
export {
  CLOSE_REASONS,
  type CloseReason,
  type FastHandler,
  type HttpHandler,
  type HttpServer,
  type HttpServerOptions,
  type HttpServerStats,
  serveHttp,
} from "./api/http_server.ts";
export { registerServerMetrics } from "./api/server_metrics.ts";
export {
  connectionsWithin,
  FD_RESERVE,
  LIBC_PATHS,
  type OpenFileLimit,
  raiseOpenFileLimit,
} from "./rlimit.ts";
export { ingestFastRoute, type IngestOptions, ingestRoutes } from "./api/ingest.ts";
export { statusComponent } from "./api/status.ts";
export { dashboardPage } from "./dashboard.ts";
export { recentLogs } from "./log.ts";
export {
  Counter,
  CounterFunc,
  Gauge,
  Histogram,
  Metrics,
  METRICS_CONTENT_TYPE,
} from "./metrics.ts";
export { registerProcessMetrics } from "./process_metrics.ts";
export { registerStoreMetrics } from "./store_metrics.ts";
export {
  type LoggedReading,
  OutboxFullError,
  type Reading,
  type ReadingHold,
  ReadingLog,
  type RowsListener,
  type StoredReading,
} from "./readings.ts";
export {
  publishReadings,
  readingPayload,
  readingPayloads,
  ReadingSeries,
  readingTopic,
} from "./reading_messages.ts";
export { Store, StoreError } from "./store.ts";
export { secureDataDir } from "./data_dir.ts";
export { ensureApiToken, TOKEN_FILE } from "./token.ts";
export { type BuildInfo, buildInfo } from "./version.ts";
export {
  runFlags,
  RUNTIME_PERMISSIONS,
  SOURCE_RUN_FLAGS,
  UNSTABLE_FLAGS,
  V8_FLAGS,
} from "./permissions.ts";
