/**
 * The one error shape of the HTTP API:
 * `{"error": {"code": "...", "message": "...", "field"?: "...", "details"?: [...]}}`.
 * Handlers and the libraries below them throw {@linkcode EdgedError}s (each
 * with its one code and status); {@linkcode errorResponse}, called by the
 * server's single error handler, turns any thrown value into the answer.
 *
 * @module
 */
import { EdgedError, storageError } from "../../lib/mod.ts";

/** One problem with a request, naming the field and the rule it broke. */
export interface ErrorDetail {
  field: string;
  message: string;
}

/** An HTTP-level refusal whose code depends on the request (bad input, auth, size). */
export class ApiError extends EdgedError {
  override readonly status: number;
  override readonly code: string;
  /** Every problem found, each naming its field. */
  declare readonly details?: readonly ErrorDetail[];

  /** Builds the error. */
  constructor(
    status: number,
    code: string,
    message: string,
    extra: {
      field?: string;
      details?: ErrorDetail[];
      headers?: Record<string, string>;
      cause?: unknown;
    } = {},
  ) {
    super(message, extra);
    this.status = status;
    this.code = code;
  }
}

/**
 * The answer to a failed request: an {@linkcode EdgedError}'s own (a full
 * disk is one, see `storageError`), else a 500 `internal`.
 */
export function errorResponse(
  thrown: unknown,
): { status: number; body: { error: Record<string, unknown> }; headers: Record<string, string> } {
  const err = storageError(thrown);
  if (err instanceof EdgedError) {
    return { status: err.status, body: err.toJSON(), headers: err.headers ?? {} };
  }
  return {
    status: 500,
    body: { error: { code: "internal", message: "internal error" } },
    headers: {},
  };
}
