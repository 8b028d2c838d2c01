/**
 * A full garbage collection on demand, for the few moments edged knows that
 * much of what V8 holds is garbage: right after start-up (module loading and
 * wiring leave megabytes behind, and the young generation has grown to fit
 * them) and in a sandbox Worker after instances were dropped. Left alone, an
 * idle process never collects, so neither is given back.
 *
 * @module
 */
import v8 from "node:v8";
import vm from "node:vm";

let collector: (() => void) | null | undefined;

/**
 * `gc()` of this isolate. `--expose-gc` set from here applies to contexts
 * made afterwards, so the function comes from a new one. Undefined where that
 * is not possible (then V8 collects when it decides to).
 */
function gcFunction(): (() => void) | undefined {
  if (collector === undefined) {
    try {
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
