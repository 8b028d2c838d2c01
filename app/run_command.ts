/**
 * `edged run`: load the configuration, take the data directory's lock, set
 * up logging, then run edged (app/run.ts) or, with `--supervise`, the
 * launcher (app/launch.ts). Each of the two loads only what it runs.
 *
 * @module
 */
import {
  ConfigError,
  type DataDirLock,
  DataDirLockedError,
  LAUNCHER_LOCK,
  loadConfig,
  lockDataDir,
  privateUmask,
  setupLogging,
  VERSION,
} from "../runtime/start.ts";
import { EXIT } from "../lib/mod.ts";
import { launcherGone, runSupervised, startedByLauncher } from "./launch.ts";

/** Flags of `edged run`. */
export interface RunFlags {
  /** `--config`. */
  config?: string;
  /** `--data-dir`. */
  dataDir?: string;
  /** `--listen`. */
  listen?: string;
  /** `--supervise`. */
  supervise?: boolean;
}

/** Runs `edged run` with `opts` and exits the process with its code. */
export async function runCommand(opts: RunFlags): Promise<never> {
  let config;
  try {
    config = await loadConfig(opts);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`edged: ${err.message}`);
      Deno.exit(EXIT.USAGE);
    }
    throw err;
  }
  // Started by the launcher (ota/update/supervisor.ts): end with it, and
  // tell it apart from a bad configuration when the directory is locked.
  const launched = startedByLauncher() && !opts.supervise;
  // Everything edged and its launcher create is private to their user
  // (runtime/data_dir.ts): readings, kv, outbox, token, slots.
  privateUmask();
  // One edged per data directory (runtime/lock.ts): a second one stops
  // here, exit 2, having written nothing. The launcher leaves the runtime
  // lock to the edged it starts (its child takes it, and a restart into
  // the other slot starts the next child only after the last one has
  // exited); it holds its own lock, and waits for the runtime lock to be
  // free before each start (an orphan of an earlier launcher ends itself).
  let lock: DataDirLock;
  try {
    if (opts.supervise) {
      lock = await lockDataDir(config.data_dir, {
        name: LAUNCHER_LOCK,
        holder: "another edged launcher",
      });
    } else {
      lock = await lockDataDir(config.data_dir);
    }
  } catch (err) {
    console.error(`edged: ${(err as Error).message}`);
    if (!(err instanceof DataDirLockedError)) Deno.exit(EXIT.FAILURE);
    Deno.exit(launched ? EXIT.DATA_DIR_BUSY : EXIT.USAGE);
  }
  await setupLogging({ level: config.log_level, format: config.log_format });
  const stop = new AbortController();
  if (launched) {
    launcherGone(Deno.stdin.readable).then(() =>
      stop.abort("the launcher that started this edged is gone (stdin closed)")
    );
  }
  let code: number;
  try {
    // The launcher never loads the runtime's components (app/run.ts).
    code = opts.supervise
      ? await runSupervised(config, opts, VERSION)
      : await (await import("./run.ts")).runEdged(config, { signal: stop.signal });
  } catch (err) {
    console.error(`edged: ${(err as Error).message}`);
    code = err instanceof ConfigError ? EXIT.USAGE : EXIT.FAILURE;
  } finally {
    lock.release();
  }
  Deno.exit(code);
}
