/**
 * The one list of permissions and V8 flags edged runs with: `deno task dev`,
 * the tests, the update launcher (when it starts edged from source) and
 * `deno task compile` (which bakes them into the binary) all use these, and a
 * test checks that deno.json's `dev` task agrees.
 *
 * @module
 */

import { LIBC_PATHS } from "./rlimit.ts";

/**
 * Deno permissions the runtime needs (no `--allow-all`). FFI is allowed for
 * libc only: `setrlimit` raises the open-file limit at start (`rlimit.ts`).
 */
export const RUNTIME_PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--allow-run",
  `--allow-ffi=${LIBC_PATHS.join(",")}`,
];

/**
 * Unstable Deno features the runtime uses: `worker-options` lets the sandbox
 * start its Workers with `deno.permissions: "none"`.
 */
export const UNSTABLE_FLAGS: readonly string[] = ["--unstable-worker-options"];

/** V8 flags the runtime needs (none: the sandbox caps memory in the module itself). */
export const V8_FLAGS: readonly string[] = [];

/** The permissions, unstable features and V8 flags as `deno run` / `deno compile` arguments. */
export function runFlags(): string[] {
  return [
    ...RUNTIME_PERMISSIONS,
    ...UNSTABLE_FLAGS,
    ...(V8_FLAGS.length > 0 ? [`--v8-flags=${V8_FLAGS.join(",")}`] : []),
  ];
}
