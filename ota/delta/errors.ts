import { EdgedError } from "../../lib/mod.ts";

/**
 * Why a BSDIFF40 patch was refused. Each code names one rule of the format or
 * one hardening limit, so callers (and tests) can tell attacks apart.
 */
export type DeltaErrorCode =
  | "bad-magic"
  | "truncated-header"
  | "bad-header"
  | "size-limit"
  | "old-size-mismatch"
  | "bad-control"
  | "negative-length"
  | "new-overflow"
  | "seek-out-of-range"
  | "too-many-controls"
  | "bzip2-corrupt"
  | "bzip2-truncated"
  | "trailing-data"
  | "digest-mismatch";

/** A patch failed validation or could not be applied; `code` says which rule broke. */
export class DeltaError extends EdgedError {
  /** Which rule broke: the error's code. */
  override readonly code: DeltaErrorCode;
  override readonly status = 422;

  /** Creates an error for `code` with a message that states the rule and the value. */
  constructor(code: DeltaErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
