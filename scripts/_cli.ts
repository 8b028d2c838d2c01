/**
 * The command-line contract of every task script: `--help` prints the usage
 * and exits 0 before any work; an unknown flag, a missing value or a stray
 * argument is a usage error, exit 2.
 *
 * @module
 */
import { Command, CommanderError } from "commander";

export { Command };

/**
 * Parses `args` with `program`. Resolves with `null` when the script should
 * go on, or with the exit code to stop with: 0 after `--help`, 2 after a
 * usage error (commander has printed the message).
 */
export function parseCli(program: Command, args: string[]): number | null {
  program.exitOverride().showHelpAfterError(`(run with --help for usage)`);
  try {
    program.parse(args, { from: "user" });
    return null;
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    return err.exitCode === 0 ? 0 : 2;
  }
}
