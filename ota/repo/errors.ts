/** Error class of the repository tool. */
import { EdgedError } from "../../lib/mod.ts";

/** A repository operation that cannot be done as asked (missing keys, duplicate release, ...). */
export class RepoError extends EdgedError {
  override readonly code = "repo_error";
  override readonly status = 400;
}
