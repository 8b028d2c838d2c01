/**
 * Error classes of the update pipeline. Each names the step that failed so
 * status pages, logs and tests can tell a download problem from a bad patch
 * from a refused rollback without parsing messages.
 *
 * @module
 */

/** Base class of every update failure. */
export class UpdateError extends Error {
  /** Creates the error; `options.cause` keeps the underlying failure. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A download failed after its retries (network, HTTP status, timeout, too long). */
export class UpdateDownloadError extends UpdateError {}

/** Not enough free space in the data directory for a download or a slot. */
export class DiskSpaceError extends UpdateError {}

/** Installing into a slot failed (copy, patch, verification). */
export class InstallError extends UpdateError {}

/** The operation does not fit the current state (e.g. rollback with no previous slot). */
export class UpdateStateError extends UpdateError {}

/** The updater is not configured (no repository URL or no trusted root). */
export class UpdateNotConfiguredError extends UpdateError {}

/** The repository lists no target of that name (e.g. a module to deploy). */
export class UpdateTargetMissingError extends UpdateError {}
