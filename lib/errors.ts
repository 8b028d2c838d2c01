/**
 * The one error base of edged. Every failure a client, an operator or a
 * script can meet is a class extending {@linkcode EdgedError} with one stable
 * `code` and the HTTP `status` it answers with. Two functions turn errors
 * into answers: the HTTP API's error handler (`runtime/api/errors.ts`) and the
 * MQTT command answer (`protocols/mqtt/commands.ts`); both read these fields,
 * so one failure has one code wherever it is reported.
 *
 * @example
 * ```ts
 * import { EdgedError } from "./errors.ts";
 * class GadgetMissingError extends EdgedError {
 *   override readonly code = "gadget_missing";
 *   override readonly status = 404;
 * }
 * const err = new GadgetMissingError("no gadget named x");
 * err.toJSON(); // { error: { code: "gadget_missing", message: "no gadget named x" } }
 * ```
 *
 * @module
 */

/** Options of {@linkcode EdgedError}. */
export interface EdgedErrorOptions extends ErrorOptions {
  /** The offending field of a request, when there is one. */
  field?: string;
  /** Every problem found, when there are several (strings or `{field, message}`). */
  details?: readonly unknown[];
  /** Extra HTTP response headers (e.g. `Retry-After`). */
  headers?: Record<string, string>;
}

/** A failure with a stable machine-readable code and the HTTP status it answers with. */
export class EdgedError extends Error {
  /** Machine-readable code, e.g. `module_not_found`; subclasses fix their own. */
  readonly code: string = "internal";
  /** HTTP status of the answer. @default {500} */
  readonly status: number = 500;
  /** The offending field, when there is one. */
  readonly field?: string;
  /** Every problem found, when there are several. */
  readonly details?: readonly unknown[];
  /** Extra HTTP response headers. */
  readonly headers?: Record<string, string>;

  /** Builds the error; `options.cause` is kept as `cause`. */
  constructor(message: string, options: EdgedErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.field = options.field;
    this.details = options.details;
    this.headers = options.headers;
  }

  /** The JSON error body: `{"error": {"code", "message", "field"?, "details"?}}`. */
  toJSON(): { error: Record<string, unknown> } {
    const error: Record<string, unknown> = { code: this.code, message: this.message };
    if (this.field !== undefined) error.field = this.field;
    if (this.details !== undefined) error.details = this.details;
    return { error };
  }
}

/** Seconds a request refused for a full disk is told to wait (`Retry-After`). */
const FULL_RETRY_AFTER_S = 30;

/**
 * The data directory's file system is full (SQLite's `SQLITE_FULL`, or the
 * operating system's `ENOSPC`): nothing of the operation was stored, and a
 * retry succeeds once there is room. 503 with `Retry-After`.
 */
export class StorageFullError extends EdgedError {
  override readonly code = "storage_full";
  override readonly status = 503;
  /** Builds the error; `cause` is the error of SQLite or of the operating system. */
  constructor(cause?: unknown) {
    super("the data directory's disk is full: nothing was stored; retry once it has room", {
      cause,
      headers: { "Retry-After": String(FULL_RETRY_AFTER_S) },
    });
  }
}

/** SQLite's result code for a full disk or database (`SQLITE_FULL`). */
const SQLITE_FULL = 13;
/** SQLite's message for `SQLITE_FULL` (node:sqlite's `exec` gives the message, not the code). */
const SQLITE_FULL_MESSAGE = "database or disk is full";

/** True for the operating system's "no space left on device" (`ENOSPC`). */
export function isNoSpace(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === "ENOSPC";
}

/**
 * `err` as what a client or a writer is told: a {@linkcode StorageFullError}
 * for a full disk (whoever met it: SQLite or a file write), else `err` itself.
 */
export function storageError(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof EdgedError) return err;
  const { code, errcode } = err as { code?: unknown; errcode?: unknown };
  const full = isNoSpace(err) ||
    (typeof errcode === "number"
      ? (errcode & 0xff) === SQLITE_FULL
      : code === "ERR_SQLITE_ERROR" && err.message.includes(SQLITE_FULL_MESSAGE));
  return full ? new StorageFullError(err) : err;
}

/**
 * `{code, message}` of any thrown value: an {@linkcode EdgedError}'s own (a
 * full disk's included, see {@linkcode storageError}), else `internal`.
 */
export function errorCode(err: unknown): { code: string; message: string } {
  const e = storageError(err);
  if (e instanceof EdgedError) return { code: e.code, message: e.message };
  return { code: "internal", message: "internal error" };
}
