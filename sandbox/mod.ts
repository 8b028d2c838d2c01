/**
 * The module sandbox: WebAssembly modules under ABI v1 with granted host
 * functions, fuel-metered CPU quotas, capped memory, WASI preview 1 subset,
 * hot swap, per-module queues, faults and quarantine.
 *
 * @example
 * ```ts ignore
 * import { modulesComponent } from "./sandbox/mod.ts";
 * const modules = await modulesComponent({ dataDir: "./data", bus, store });
 * ```
 *
 * @module
 */

// module_host.ts (ModuleHost and everything under it) loads with the first
// module: modulesComponent's LazyModuleHost builds it. Tests and tools that
// run a host themselves import module_host.ts.
export type { ModuleHost, ModuleHostOptions } from "./module_host.ts";
export type { ModuleState, ModuleStatus } from "./module_record.ts";
export { modulesApi, type ModulesApiHost, outcomeJson } from "./api.ts";
// The manifest's schema and sync parser are in sandbox/manifest.ts, loaded
// with zod the first time a manifest is read: manifestParser() gives the parser.
export type { Manifest } from "./manifest.ts";
export { manifestParser } from "./_manifest_parser.ts";
// validate.ts (validateModule) and instance.ts (GuestInstance) load with the
// first module: moduleValidator() gives the validator (moduleOnlyChecker() the
// checks no manifest changes); tests and tools that
// run a guest themselves import instance.ts.
export { moduleOnlyChecker, moduleValidator } from "./_validator.ts";
export type { ValidatedModule, ValidateOptions } from "./validate.ts";
export type { CallOutcome } from "./instance.ts";
export {
  ModuleEffectsRefusedError,
  ModuleFailedError,
  ModuleFault,
  ModuleLoadingError,
  ModuleMemoryBudgetError,
  ModuleNotFoundError,
  ModuleQuarantinedError,
  ModuleValidationError,
  PayloadTooLargeError,
  WorkerGoneError,
} from "./errors.ts";
export type { FaultKind } from "./errors.ts";
export { EdgeError } from "./host/context.ts";
export type { StoreLike } from "./kv.ts";
export type { DeliveryStatus, SubscriptionStatus } from "./module_record.ts";
export { KV_MIGRATIONS } from "./kv.ts";
export { LazyModuleHost, type ModulesComponent, modulesComponent } from "./component.ts";
// The models' service and engine load when first needed (sandbox/nn/mod.ts).
export {
  EngineError,
  LazyNnService,
  MODEL_NAME_RE,
  ModelInvalidError,
  ModelNotFoundError,
  modelsComponent,
  type ModelStatus,
  type NnEngine,
  nnEngineClass,
  type NnService,
  nnServiceClass,
  type TensorSpec,
} from "./nn/mod.ts";
