/**
 * The one list of permissions, Deno settings and V8 flags edged runs with: `deno task dev`,
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

/**
 * Deno's own settings: `--no-code-cache` turns off V8's code cache, which
 * Deno keeps in a file of its own (`v8_code_cache_v2` under its cache
 * directory) and maps into the process. The cache saved about 15 ms to ready
 * at start (66 against 81 ms, median of 8 starts) and cost about 2.8 MiB of
 * idle RSS (51.2 against 48.3 MiB from the bundle on the 2-core VM of the
 * bench): a device starts edged once per boot or update, and holds the memory
 * all day.
 */
export const DENO_FLAGS: readonly string[] = ["--no-code-cache"];

/**
 * The permissions, unstable features, Deno's settings and V8 flags as
 * `deno run` / `deno compile` arguments.
 */
export function runFlags(): string[] {
  return [
    ...RUNTIME_PERMISSIONS,
    ...UNSTABLE_FLAGS,
    ...DENO_FLAGS,
    ...(V8_FLAGS.length > 0 ? [`--v8-flags=${V8_FLAGS.join(",")}`] : []),
  ];
}

/**
 * Flags of edged run from source (`deno run`) only, not baked into a compiled
 * binary (which embeds every module and loads each when it is imported):
 * `--unstable-lazy-dynamic-imports` makes Deno load the modules of an
 * `import("...")` when it runs, where by default it loads every statically
 * analyzable one at start and keeps their graph. So an idle edged holds
 * nothing of the other commands' code (app/cli.ts), of Modbus and OPC UA
 * (node-opcua's npm graph) or of npm:mqtt: ~3.5 MiB of resident memory.
 */
export const SOURCE_RUN_FLAGS: readonly string[] = ["--unstable-lazy-dynamic-imports"];

/** {@linkcode runFlags} and {@linkcode SOURCE_RUN_FLAGS}: the `deno run` arguments of edged. */
export function sourceRunFlags(): string[] {
  return [...runFlags(), ...SOURCE_RUN_FLAGS];
}
