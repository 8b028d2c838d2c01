/**
 * What an edged process needs before the runtime itself, as a library entry
 * lighter than `runtime/mod.ts`: the configuration, the data directory's lock
 * and umask, logging, the version and the flags to start edged again.
 * `edged run` (app/run_command.ts) and the launcher (`edged run --supervise`,
 * app/launch.ts and ota/update/supervisor.ts) import this, so the launcher,
 * which idles beside edged for as long as the device runs, never loads the
 * store (`node:sqlite`), the reading log, the HTTP server or Hono, which
 * `runtime/mod.ts` brings.
 *
 * @module
 */
export { ConfigError, type ConfigFlags, loadConfig } from "./config.ts";
export type { Config } from "./config_schema.ts";
export {
  assertUnlocked,
  type DataDirLock,
  DataDirLockedError,
  LAUNCHER_LOCK,
  lockDataDir,
  RUNTIME_LOCK,
} from "./lock.ts";
export { privateUmask } from "./data_dir.ts";
export { setupLogging } from "./log.ts";
export { VERSION } from "./version.ts";
export { sourceRunFlags } from "./permissions.ts";
