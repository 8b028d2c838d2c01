/**
 * The TUF repository tool (behind `edged repo`): keys, signing, releases with
 * BSDIFF40 deltas, modules, key rotation, and a static server with Range
 * and ETag support.
 *
 * @module
 */
export { RepoError } from "./errors.ts";
export { withRepoLock } from "./_util.ts";
export { generateKey, loadKeys, type SigningKey } from "./keystore.ts";
export {
  type AddedTarget,
  consistentTargetPath,
  DEFAULT_CONFIG,
  type InitOptions,
  type OpenOptions,
  type RepoConfig,
  Repository,
  type RoleName,
  ROLES,
} from "./repository.ts";
export { addModule, addRelease, type AddReleaseOptions } from "./releases.ts";
export { addModel, type AddModelOptions } from "./models.ts";
export {
  type ServeOptions,
  serveRepository,
  staticHandler,
  type StaticHandlerOptions,
} from "./serve.ts";
