/**
 * The module sandbox: WebAssembly modules under ABI v1 with granted host
 * functions, fuel-metered CPU quotas, capped memory, WASI preview 1 subset,
 * hot swap, per-module queues, faults and quarantine.
 *
 * @example
 * ```ts ignore
 * import { ModuleHost } from "./sandbox/mod.ts";
 * const host = new ModuleHost({ dataDir: "./data", bus, store });
 * runtime.add(host.component());
 * ```
 *
 * @module
 */

export {
  ModuleFailedError,
  ModuleHost,
  ModuleQuarantinedError,
  PayloadTooLargeError,
} from "./module_host.ts";
export type {
  BusLike,
  BusMessageLike,
  ModuleHostOptions,
  ModuleState,
  ModuleStatus,
} from "./module_host.ts";
export { modulesApi, outcomeJson } from "./api.ts";
export { moduleCommand, runValidate } from "./cli.ts";
export { type Manifest, manifestSchema, parseManifest } from "./manifest.ts";
export { sha256Hex, validateModule } from "./validate.ts";
export type { ValidatedModule, ValidateOptions } from "./validate.ts";
export { GuestInstance } from "./instance.ts";
export type { CallOutcome } from "./instance.ts";
export { ModuleFault, ModuleNotFoundError, ModuleValidationError } from "./errors.ts";
export type { FaultKind } from "./errors.ts";
export { EdgeError } from "./host/context.ts";
export type { StoreLike } from "./kv.ts";
export { KV_MIGRATIONS } from "./kv.ts";
export { modulesComponent } from "./component.ts";
export { WorkerGoneError } from "./pool.ts";
