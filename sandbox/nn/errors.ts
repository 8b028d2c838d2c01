/**
 * Errors of models and the inference engine, each with its one code and
 * HTTP status (`lib/errors.ts`).
 *
 * @module
 */
import { EdgedError } from "../../lib/mod.ts";

/** A model was refused (HTTP 422, exit 1); `reason` is why. */
export class ModelInvalidError extends EdgedError {
  override readonly code = "model_invalid";
  override readonly status = 422;
  /** Builds the error; the answer's `details` hold the reason. */
  constructor(readonly reason: string, options?: ErrorOptions) {
    super(`model refused: ${reason}`, { ...options, details: [reason] });
  }
}

/** The named model is not installed (HTTP 404). */
export class ModelNotFoundError extends EdgedError {
  override readonly code = "model_not_found";
  override readonly status = 404;
  /** Builds the error. */
  constructor(name: string) {
    super(`model "${name}" is not installed`);
  }
}

/** The engine refused a model or failed an operation; `message` is its reason. */
export class EngineError extends EdgedError {
  override readonly code = "nn_engine_error";
  override readonly status = 500;
}

/** The engine stopped or died before answering (HTTP 503: try again). */
export class EngineStoppedError extends EdgedError {
  override readonly code = "nn_engine_unavailable";
  override readonly status = 503;
  /** Builds the error. */
  constructor(why: string) {
    super(`the inference engine ${why}`, { headers: { "Retry-After": "1" } });
  }
}

/** The engine's files are missing from the binary and from Deno's npm cache. */
export class EngineFilesError extends EdgedError {
  override readonly code = "nn_engine_files_missing";
  override readonly status = 500;
}
