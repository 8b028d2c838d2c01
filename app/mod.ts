/**
 * The composition root: the command line and the process that wires the
 * runtime, the sandbox, the protocols and the updater together. Nothing
 * imports `app/` but `main.ts` and the tests.
 *
 * @module
 */
export { buildProgram, main } from "./cli.ts";
export { runEdged, type RunOptions } from "./run.ts";
export { createComponents } from "./components.ts";
export { type LaunchFlags, runSupervised, selfCommand } from "./launch.ts";
