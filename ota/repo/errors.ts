/** Error class of the repository tool. */

/** A repository operation that cannot be done as asked (missing keys, duplicate release, ...). */
export class RepoError extends Error {
  /** Creates the error; `options.cause` keeps the underlying failure. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RepoError";
  }
}
