/**
 * The one error shape of the HTTP API:
 * `{"error": {"code": "...", "message": "...", "field"?: "...", "details"?: [...]}}`.
 * Handlers throw {@linkcode ApiError}; the server's error handler renders it.
 *
 * @module
 */
import type { ContentfulStatusCode } from "hono/utils/http-status";

/** One problem with a request, naming the field and the rule it broke. */
export interface ErrorDetail {
  field: string;
  message: string;
}

/** Thrown by handlers to answer with a status and the JSON error body. */
export class ApiError extends Error {
  /** HTTP status. */
  readonly status: ContentfulStatusCode;
  /** Machine-readable code, e.g. `invalid_field`. */
  readonly code: string;
  /** The offending field, when there is one. */
  readonly field?: string;
  /** Every problem found, when there are several. */
  readonly details?: ErrorDetail[];
  /** Extra response headers (e.g. Retry-After). */
  readonly headers?: Record<string, string>;

  /** Builds the error. */
  constructor(
    status: ContentfulStatusCode,
    code: string,
    message: string,
    extra: {
      field?: string;
      details?: ErrorDetail[];
      headers?: Record<string, string>;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: extra.cause });
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = extra.field;
    this.details = extra.details;
    this.headers = extra.headers;
  }

  /** The JSON body. */
  toJSON(): { error: Record<string, unknown> } {
    const error: Record<string, unknown> = { code: this.code, message: this.message };
    if (this.field !== undefined) error.field = this.field;
    if (this.details !== undefined) error.details = this.details;
    return { error };
  }
}
