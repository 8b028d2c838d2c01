/**
 * The ground floor every other folder builds on: the error base, exit codes,
 * the system clock's steps, the device's memory,
 * durable file writes, hex and digests, byte joins, progress display, MQTT topic
 * rules, a garbage collection on demand, POSIX paths without `node:path` and
 * the Workers' entry modules from source or from the bundle.
 * It imports nothing local outside `lib/` and nothing heavier than the web
 * platform and Deno, so the TUF client and the delta tool stay small.
 *
 * @module
 */
export { concatBytes } from "./bytes.ts";
export {
  CLOCK_SET_AFTER_MS,
  clockIsSet,
  ClockSteps,
  type ClockStepsOptions,
  type OwedStep,
  StampFollower,
  type StampFollowerOptions,
} from "./clock.ts";
export { entryIn, workerEntry } from "./entry.ts";
export {
  EdgedError,
  type EdgedErrorOptions,
  errorCode,
  isNoSpace,
  storageError,
  StorageFullError,
} from "./errors.ts";
export { EXIT, type ExitCode } from "./exit.ts";
export { collectNow } from "./gc.ts";
export { copyFileAtomic, executableMode, setUmask, syncDir, writeFileAtomic } from "./fs.ts";
export { fromHex, sha256File, sha256Hex, toHex } from "./hex.ts";
export { joinPath, parentDir, pathFromFileUrl, resolvePath } from "./path.ts";
export { deviceMemoryBytes, type MemorySources } from "./memory.ts";
export {
  configureLogging,
  getLogger,
  type Logger,
  type LoggingSetup,
  type LogLevel,
  type LogRecord,
  type Sink,
} from "./log.ts";
export {
  createProgress,
  formatBytes,
  formatDuration,
  type Progress,
  type ProgressOptions,
  type ProgressStream,
} from "./progress.ts";
export {
  filterProblem,
  MESSAGE_BYTES_SQL,
  messageBytes,
  TopicCache,
  TopicError,
  topicMatches,
  topicProblem,
  validateFilter,
  validateTopic,
} from "./topics.ts";
