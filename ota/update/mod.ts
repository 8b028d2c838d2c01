/**
 * The update pipeline: resumable rate-limited downloads, A/B slots with an
 * atomic switch, boot confirmation and automatic rollback, the launcher
 * (`edged run --supervise`), policy (staged rollout), the updater component
 * with `/api/v1/update`, and `edged update`.
 *
 * @module
 */
export { updateApi } from "./api.ts";
export { type BootDecision, confirmBoot, prepareBoot, type PrepareBootOptions } from "./boot.ts";
export {
  type MqttHooks,
  type UpdaterComponent,
  updaterComponent,
  type UpdaterComponentOptions,
} from "./component.ts";
export {
  download,
  type DownloadOptions,
  type DownloadProgress,
  type DownloadResult,
} from "./download.ts";
export {
  DiskSpaceError,
  InstallError,
  UpdateCancelledError,
  UpdateDownloadError,
  UpdateError,
  UpdateNotConfiguredError,
  UpdateParamsError,
  UpdateStateError,
  UpdateTargetMissingError,
  UpdateVerificationError,
} from "./errors.ts";
export { type StagedRelease, switchToStaged } from "./install.ts";
export { compareVersions, inRollout, jittered, rolloutPosition } from "./policy.ts";
export {
  type BootState,
  emptyState,
  otherSlot,
  type RollbackRecord,
  rolledBack,
  type SlotInfo,
  type SlotName,
  SlotStore,
  type Trial,
} from "./state.ts";
export { LAUNCHER_ENV } from "./launcher.ts";
export { supervise, type SuperviseOptions } from "./supervisor.ts";
export { sleep, TokenBucket, type TokenBucketOptions } from "./token_bucket.ts";
export type { ApplyResult, ApplyStep } from "./apply.ts";
export type { Candidate, CheckResult } from "./release_check.ts";
export { type UpdatePhase, Updater, type UpdaterOptions, type UpdateStatus } from "./updater.ts";
export { renderStatus } from "./summary.ts";
