/**
 * Glue between the command line and the launcher: builds
 * {@linkcode supervise}'s options from the configuration, and the child's
 * side of the tie to its launcher ({@linkcode startedByLauncher},
 * {@linkcode launcherGone}).
 *
 * @module
 */
import { type Config, sourceRunFlags } from "../runtime/start.ts";
import { LAUNCHER_ENV, supervise } from "../ota/update/launcher.ts";
// Not node:path and node:url: the launcher loads no node: module (lib/path.ts).
import { pathFromFileUrl, resolvePath as resolve } from "../lib/mod.ts";

/**
 * How to start this build again: itself when compiled, `deno run main.ts`
 * from source, `deno run --no-config main.js` from the bundle (which holds
 * every package, so it needs no deno.json, as when the launcher started).
 */
export function selfCommand(): string[] {
  if (Deno.build.standalone) return [Deno.execPath()];
  const main = pathFromFileUrl(Deno.mainModule);
  const bundled = main.endsWith(".js") ? ["--no-config"] : [];
  return [Deno.execPath(), "run", ...sourceRunFlags(), ...bundled, main];
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
  // No collectNow() here, unlike app/run.ts: its node:v8 and node:vm would
  // start the Node compatibility layer, which costs the launcher more memory
  // than the collection gives back.
  return await supervise({
    dataDir,
    runArgs,
    factoryCommand: selfCommand(),
    factoryBinary: u.binary ?? (Deno.build.standalone ? Deno.execPath() : undefined),
    factoryVersion,
    maxBootAttempts: u.max_boot_attempts,
    bootDeadlineMs: u.boot_deadline_s * 1000,
    // Long enough for an orphan of an earlier launcher to notice and shut down.
    lockWaitMs: (config.shutdown_timeout_s + 20) * 1000,
  });
}

/**
 * Whether this process is an edged started by the launcher (it set
 * `LAUNCHER_ENV`); removes the variable, so nothing this process starts
 * inherits it.
 */
export function startedByLauncher(): boolean {
  const launched = Deno.env.get(LAUNCHER_ENV) === "stdin";
  Deno.env.delete(LAUNCHER_ENV);
  return launched;
}

/**
 * Resolves when the launcher that started this edged is gone: `stdin` is a
 * pipe whose other end only the launcher holds and never writes to, so the
 * kernel ends it (end of file) when the launcher ends, however it ends. One
 * pending read, no polling; anything written is dropped.
 */
export async function launcherGone(stdin: ReadableStream<Uint8Array>): Promise<void> {
  const reader = stdin.getReader();
  try {
    while (!(await reader.read()).done) { /* nothing to read: the launcher writes nothing */ }
  } catch {
    // A broken pipe says the same.
  } finally {
    reader.releaseLock();
  }
}
