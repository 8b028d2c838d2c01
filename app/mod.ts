/**
 * The composition root: the command line and the process that wires the
 * runtime, the sandbox, the protocols and the updater together. Nothing
 * imports `app/` but `main.ts` and the tests; `main.ts` imports `app/main.ts`
 * alone, which loads the rest of `app/` only as the command line needs it.
 *
 * @module
 */
export { main, plainRunFlags } from "./main.ts";
export { buildProgram } from "./cli.ts";
export { runEdged, type RunOptions } from "./run.ts";
export { createComponents } from "./components.ts";
export { type LaunchFlags, runSupervised, selfCommand } from "./launch.ts";
