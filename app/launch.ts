/**
 * Glue between the command line and the launcher: builds
 * {@linkcode supervise}'s options from the configuration.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { type Config, runFlags } from "../runtime/mod.ts";
import { supervise } from "../ota/update/mod.ts";

/** How to start this build again: itself when compiled, `deno run main.ts` from source. */
export function selfCommand(): string[] {
  if (Deno.build.standalone) return [Deno.execPath()];
  return [Deno.execPath(), "run", ...runFlags(), fileURLToPath(Deno.mainModule)];
}

/** Flags of `edged run` that the child gets again. */
export interface LaunchFlags {
  /** `--config`. */
  config?: string;
  /** `--data-dir`. */
  dataDir?: string;
  /** `--listen`. */
  listen?: string;
}

/** `edged run --supervise`: runs the launcher until it is stopped; resolves with its exit code. */
export async function runSupervised(
  config: Config,
  flags: LaunchFlags,
  factoryVersion: string,
): Promise<number> {
  const dataDir = resolve(config.data_dir);
  await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const runArgs = ["--data-dir", dataDir];
  if (flags.config) runArgs.push("--config", resolve(flags.config));
  if (flags.listen) runArgs.push("--listen", flags.listen);
  const u = config.update;
  return await supervise({
    dataDir,
    runArgs,
    factoryCommand: selfCommand(),
    factoryBinary: u.binary ?? (Deno.build.standalone ? Deno.execPath() : undefined),
    factoryVersion,
    maxBootAttempts: u.max_boot_attempts,
    bootDeadlineMs: u.boot_deadline_s * 1000,
  });
}
