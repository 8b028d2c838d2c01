/**
 * Model names: the same rule as module names, so a name is safe as a path
 * segment, a URL segment and a TUF target segment.
 *
 * @module
 */

/** What a model name must match. */
export const MODEL_NAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** The rule, for error messages. */
export const MODEL_NAME_MESSAGE =
  "model name must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit";
