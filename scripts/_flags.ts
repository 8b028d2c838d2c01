/**
 * Build settings: the target triples, and the runtime's flags (which live in
 * runtime/permissions.ts, since the update launcher needs them too).
 *
 * @module
 */
export { runFlags, RUNTIME_PERMISSIONS, sourceRunFlags, V8_FLAGS } from "../runtime/mod.ts";

/** Target triples `deno task compile` builds. */
export const TARGETS: readonly string[] = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
];
