/**
 * Error classes of the update pipeline. Each names the step that failed so
 * status pages, logs and tests can tell a download problem from a bad patch
 * from a refused rollback without parsing messages; each has its one code
 * and HTTP status (`lib/errors.ts`), the same in the HTTP API, MQTT command
 * answers and `edged update`.
 *
 * @module
 */
import { EdgedError, type EdgedErrorOptions } from "../../lib/mod.ts";

/** Base class of every update failure. */
export class UpdateError extends EdgedError {
  override readonly code: string = "update_failed";
  override readonly status: number = 502;
}

/** A download failed after its retries (network, HTTP status, timeout, too long). */
export class UpdateDownloadError extends UpdateError {
  override readonly code: string = "update_download_failed";
}

/** Not enough free space in the data directory for a download or a slot. */
export class DiskSpaceError extends UpdateError {
  override readonly code: string = "insufficient_storage";
  override readonly status: number = 507;
}

/** Installing into a slot failed (copy, patch, verification). */
export class InstallError extends UpdateError {
  override readonly code: string = "update_install_failed";
}

/** The operation does not fit the current state (e.g. rollback with no previous slot). */
export class UpdateStateError extends UpdateError {
  override readonly code: string = "update_state";
  override readonly status: number = 409;
}

/** The updater is not configured (no repository URL or no trusted root). */
export class UpdateNotConfiguredError extends UpdateError {
  override readonly code: string = "update_not_configured";
  override readonly status: number = 409;
}

/** The repository lists no target of that name (e.g. a module to deploy). */
export class UpdateTargetMissingError extends UpdateError {
  override readonly code: string = "target_not_found";
  override readonly status: number = 404;
}

/** A request to the updater is missing a parameter or has a bad one. */
export class UpdateParamsError extends UpdateError {
  override readonly code: string = "invalid_params";
  override readonly status: number = 400;
}

/**
 * A downloaded or patched file is not what the trusted metadata lists: the
 * wrong SHA-256 or length. Not a network problem: retrying fetches the same
 * bytes, so the release is refused until the repository (or whatever sits
 * between it and the device) is fixed. The answer names the target and both
 * digests.
 */
export class UpdateVerificationError extends UpdateError {
  override readonly code: string = "update_verification_failed";
  /** The target path (or URL) that failed. */
  readonly target: string;
  /** SHA-256 and length the trusted metadata lists. */
  readonly expected: { sha256: string; length: number };
  /** What arrived: its SHA-256 (null when it was not read to the end) and length. */
  readonly actual: { sha256: string | null; length: number };

  /** Builds the error; the message names the target and both digests. */
  constructor(
    target: string,
    expected: { sha256: string; length: number },
    actual: { sha256: string | null; length: number },
    options: EdgedErrorOptions & { detail?: string } = {},
  ) {
    super(
      `${target}: ${options.detail ?? "verification failed"}: got ${actual.length} bytes with ` +
        `SHA-256 ${actual.sha256 ?? "(not computed)"}, the signed metadata lists ` +
        `${expected.length} bytes with SHA-256 ${expected.sha256}`,
      options,
    );
    this.target = target;
    this.expected = expected;
    this.actual = actual;
  }

  /** The error body with `target`, `expected` and `actual` beside the code and message. */
  override toJSON(): { error: Record<string, unknown> } {
    const { error } = super.toJSON();
    return {
      error: { ...error, target: this.target, expected: this.expected, actual: this.actual },
    };
  }
}

/** An apply or module deploy was cancelled (by a rollback or the shutdown). */
export class UpdateCancelledError extends UpdateError {
  override readonly code: string = "update_cancelled";
  override readonly status: number = 409;
}

/** `update-check` asked to apply where neither `update.auto_apply` nor `mqtt.commands.allow_apply` allows it. */
export class ApplyNotAllowedError extends UpdateError {
  override readonly code: string = "apply_not_allowed";
  override readonly status: number = 403;
}

/** A module deploy that would install an older version than the one installed. */
export class DowngradeRefusedError extends UpdateError {
  override readonly code: string = "downgrade_refused";
  override readonly status: number = 409;
}
