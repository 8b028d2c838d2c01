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

/** `{code, message}` of any thrown value: an {@linkcode EdgedError}'s own, else `internal`. */
export function errorCode(err: unknown): { code: string; message: string } {
  if (err instanceof EdgedError) return { code: err.code, message: err.message };
  return { code: "internal", message: "internal error" };
}
