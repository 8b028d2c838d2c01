/**
 * The launcher's entry into the update pipeline, lighter than `mod.ts`:
 * {@linkcode supervise} (`edged run --supervise`, app/launch.ts) loads the
 * supervisor and the boot step (`supervisor.ts`, `boot.ts`, `state.ts`) when
 * it is called, and nothing of TUF, downloads, deltas or the updater
 * component, since the launcher idles beside edged for as long as the device
 * runs; {@linkcode LAUNCHER_ENV}, which the edged it starts reads, loads
 * nothing at all.
 *
 * @module
 */
import type { SuperviseOptions } from "./supervisor.ts";

export type { SuperviseOptions };

/**
 * Internal: set (to `stdin`) in the environment of the edged the launcher
 * starts. That edged shuts down when its stdin reaches end of file (the
 * launcher is gone) and exits `EXIT.DATA_DIR_BUSY` instead of 2 when the data
 * directory is locked. Not an `EDGED_*` name: older releases refuse unknown
 * `EDGED_*` variables, and the launcher starts those too.
 */
export const LAUNCHER_ENV = "_EDGED_LAUNCHER";

/** Runs the launcher loop (`supervisor.ts`); resolves with the exit code for the launcher. */
export async function supervise(options: SuperviseOptions): Promise<number> {
  return await (await import("./supervisor.ts")).supervise(options);
}
