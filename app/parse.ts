/**
 * How every edged entry point parses its command line: usage errors exit 2
 * (as getopt tools do), `--help` and `--version` exit 0.
 *
 * @module
 */
import { type Command, CommanderError } from "commander";
import { EXIT } from "../lib/mod.ts";

/** Applies `fn` to a command and every sub-command (added ones inherit nothing). */
function everyCommand(cmd: Command, fn: (c: Command) => void): void {
  fn(cmd);
  for (const sub of cmd.commands) everyCommand(sub, fn);
}

/** Parses `args` with `program`; resolves with the exit code for usage problems. */
export async function parseCommandLine(program: Command, args: string[]): Promise<number> {
  everyCommand(program, (c) => c.exitOverride());
  try {
    await program.parseAsync(args, { from: "user" });
    return EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    throw err;
  }
}
