/**
 * Errors of model installation.
 *
 * @module
 */

/** A model was refused (HTTP 422, exit 1); `reason` is why. */
export class ModelInvalidError extends Error {
  constructor(readonly reason: string, options?: ErrorOptions) {
    super(`model refused: ${reason}`, options);
    this.name = "ModelInvalidError";
  }
}

/** The named model is not installed (HTTP 404). */
export class ModelNotFoundError extends Error {
  constructor(name: string) {
    super(`model "${name}" is not installed`);
    this.name = "ModelNotFoundError";
  }
}
