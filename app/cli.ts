/**
 * The edged command line (MISSION.md, "Command line"): `edged run` (the
 * default), `edged version`, and the sub-commands each subsystem adds.
 *
 * @module
 */
import { Command } from "commander";
import { parseCommandLine } from "./parse.ts";
import {
  buildInfo,
  ConfigError,
  type DataDirLock,
  DataDirLockedError,
  LAUNCHER_LOCK,
  loadConfig,
  lockDataDir,
  privateUmask,
  setupLogging,
  VERSION,
} from "../runtime/mod.ts";
import { EXIT } from "../lib/mod.ts";
import { deltaCommand } from "./commands/delta.ts";
import { moduleCommand } from "./commands/module.ts";
import { modelCommand } from "./commands/model.ts";
import { repoCommand } from "./commands/repo.ts";
import { tufClientCommand } from "./commands/tuf_client.ts";
import { updateCommand } from "./commands/update.ts";
import { launcherGone, runSupervised, startedByLauncher } from "./launch.ts";
import { runEdged } from "./run.ts";

/** Flags of `edged run`. */
type RunFlags = { config?: string; dataDir?: string; listen?: string; supervise?: boolean };

/** Builds the command tree (exported for tests and the compile check). */
export function buildProgram(): Command {
  const program = new Command("edged")
    .description(
      "Edge runtime for IoT gateways: HTTP ingest, WebAssembly modules, MQTT uplink, OTA updates.",
    )
    .showHelpAfterError("(run 'edged --help' for usage)");

  program.command("run", { isDefault: true })
    .description("start the runtime (the default command)")
    .option("--config <file>", "TOML configuration file (also EDGED_CONFIG)")
    .option("--data-dir <dir>", "data directory (also EDGED_DATA_DIR; default ./data)")
    .option("--listen <host:port>", "HTTP API address (also EDGED_LISTEN; default 127.0.0.1:8080)")
    .option("--supervise", "launcher: start the active update slot, confirm or roll back")
    .action(async (opts: RunFlags) => {
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
        code = opts.supervise
          ? await runSupervised(config, opts, VERSION)
          : await runEdged(config, { signal: stop.signal });
      } catch (err) {
        console.error(`edged: ${(err as Error).message}`);
        code = err instanceof ConfigError ? EXIT.USAGE : EXIT.FAILURE;
      } finally {
        lock.release();
      }
      Deno.exit(code);
    });

  program.command("version")
    .description("print version, target triple and build info")
    .option("--json", "print JSON for scripts")
    .action((opts: { json?: boolean }) => {
      const info = buildInfo();
      if (opts.json) {
        console.log(JSON.stringify(info));
      } else {
        console.log(
          `edged ${VERSION} (${info.target}${info.compiled ? ", compiled" : ""})\n` +
            `deno ${info.deno}, v8 ${info.v8}, typescript ${info.typescript}`,
        );
      }
    });

  program.addCommand(deltaCommand());
  program.addCommand(repoCommand());
  program.addCommand(tufClientCommand());
  program.addCommand(moduleCommand());
  program.addCommand(modelCommand());
  program.addCommand(updateCommand());

  return program;
}

/** Runs the CLI with `args`; resolves with the exit code for usage problems. */
export function main(args: string[]): Promise<number> {
  return parseCommandLine(buildProgram(), args);
}
