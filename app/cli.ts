/**
 * The edged command line (README.md, "Command line"): `edged run` (the
 * default), `edged version`, and the sub-commands each subsystem adds.
 *
 * @module
 */
import { Command } from "commander";
import { buildInfo, VERSION } from "../runtime/mod.ts";
import { deltaCommand } from "./commands/delta.ts";
import { moduleCommand } from "./commands/module.ts";
import { modelCommand } from "./commands/model.ts";
import { repoCommand } from "./commands/repo.ts";
import { tufClientCommand } from "./commands/tuf_client.ts";
import { updateCommand } from "./commands/update.ts";
import { runCommand, type RunFlags } from "./run_command.ts";

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
    .action((opts: RunFlags) => runCommand(opts));

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
