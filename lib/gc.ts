/**
 * A full garbage collection on demand, for the few moments edged knows that
 * much of what V8 holds is garbage: right after start-up (module loading and
 * wiring leave megabytes behind, and the young generation has grown to fit
 * them) and in a sandbox Worker after instances were dropped. Left alone, an
 * idle process never collects, so neither is given back.
 *
 * `node:v8` and `node:vm` are loaded at the first collection
 * (`process.getBuiltinModule`), not with this module: loading a `node:`
 * module starts Deno's Node compatibility layer, which a process that never
 * collects (the launcher, lib/path.ts) need not pay for.
 *
 * @module
 */

let collector: (() => void) | null | undefined;

/**
 * `gc()` of this isolate. `--expose-gc` set from here applies to contexts
 * made afterwards, so the function comes from a new one. Undefined where that
 * is not possible (then V8 collects when it decides to).
 */
function gcFunction(): (() => void) | undefined {
  if (collector === undefined) {
    try {
      const v8 = process.getBuiltinModule("node:v8");
      const vm = process.getBuiltinModule("node:vm");
      v8.setFlagsFromString("--expose-gc");
      collector = vm.runInNewContext("gc") as () => void;
    } catch {
      collector = null;
    }
  }
  return collector ?? undefined;
}

/** Collects all garbage of this isolate now; false where it cannot. */
export function collectNow(): boolean {
  const gc = gcFunction();
  gc?.();
  return gc !== undefined;
}
