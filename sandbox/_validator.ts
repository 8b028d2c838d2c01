/**
 * `validateModule` (`validate.ts`), reached without loading it: the wasm
 * parser, the fuel instrumenter and the ABI tables under it load the first
 * time a module is validated, so an idle edged with no module installed never
 * holds them (~1 MiB of resident memory).
 *
 * @module
 */
import type { moduleOnlyReasons, validateModule } from "./validate.ts";

/** `validateModule`, loading `validate.ts` the first time. */
export async function moduleValidator(): Promise<typeof validateModule> {
  return (await import("./validate.ts")).validateModule;
}

/** `moduleOnlyReasons`, loading `validate.ts` the first time. */
export async function moduleOnlyChecker(): Promise<typeof moduleOnlyReasons> {
  return (await import("./validate.ts")).moduleOnlyReasons;
}
