/**
 * Error classes of the TUF client. Each names the rule that was broken, so a
 * caller (and a test) can tell a rollback from an expired role from a bad
 * signature without parsing messages. Metadata that fails a check is
 * `update_verification_failed`; a server that cannot be reached or read is
 * `update_download_failed` (both 502: the failure is upstream).
 *
 * @module
 */
import { EdgedError } from "../../lib/mod.ts";

/** Base class of every TUF failure: metadata or a target failed verification. */
export class TufError extends EdgedError {
  override readonly code: string = "update_verification_failed";
  override readonly status: number = 502;
}

/** Base class of the network failures: the repository could not be reached or read. */
export class TufDownloadError extends TufError {
  override readonly code: string = "update_download_failed";
}

/** Metadata does not follow the format of the specification (section 4). */
export class FormatError extends TufError {}

/** Fewer than `threshold` valid signatures from the role's keys (section 5.3.4, 5.4.2, 5.5.3, 5.6.3). */
export class UnsignedMetadataError extends TufError {}

/** Metadata `expires` is in the past (freeze attack, section 5.3.10, 5.4.4, 5.5.6, 5.6.5). */
export class ExpiredMetadataError extends TufError {}

/**
 * A version is not the one expected: lower than trusted (rollback, 5.3.5,
 * 5.4.3, 5.5.5), or different from the one the parent names (5.5.4, 5.6.4).
 */
export class BadVersionError extends TufError {}

/** Same version as the trusted copy: nothing new, keep what we have (5.4.3.1). */
export class EqualVersionError extends TufError {}

/** Downloaded bytes do not match the length or hashes recorded for them (5.5.2, 5.6.2, 5.7.3). */
export class LengthOrHashMismatchError extends TufError {}

/** The server sent more bytes than the allowed maximum (endless data attack). */
export class DownloadLengthError extends TufDownloadError {}

/** The server answered with an HTTP error status. */
export class DownloadHttpError extends TufDownloadError {
  /** HTTP status code of the server's answer. */
  readonly httpStatus: number;
  /** Creates the error for the server's `httpStatus`. */
  constructor(message: string, httpStatus: number, options?: ErrorOptions) {
    super(message, options);
    this.httpStatus = httpStatus;
  }
}

/** The server was too slow: no progress within the timeout (slow retrieval attack). */
export class DownloadTimeoutError extends TufDownloadError {}

/** Any other network failure (connection refused, reset, DNS). */
export class DownloadError extends TufDownloadError {}

/** The requested target path is not listed by any trusted targets role. */
export class TargetNotFoundError extends TufError {
  override readonly code: string = "target_not_found";
  override readonly status: number = 404;
}

/** Local trusted metadata is missing or unusable (client not initialised). */
export class TrustStoreError extends TufError {
  override readonly code: string = "trust_store";
  override readonly status: number = 500;
}
