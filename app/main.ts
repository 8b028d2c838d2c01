/**
 * The executable's entry (`main.ts` calls {@linkcode main}). `edged run` with
 * nothing but its own flags, which is how the service, the launcher and the
 * tasks start edged, goes straight to app/run_command.ts; every other command
 * line (another command, `--help`, anything commander must judge) goes to the
 * commander CLI (app/cli.ts). So a running edged never loads commander or the
 * other commands' code (about 1 MiB of idle RSS, 5 MiB in the launcher).
 *
 * @module
 */
import type { RunFlags } from "./run_command.ts";

/** `edged run`'s flags that take a value, by their long name. */
const VALUE_FLAGS: Record<string, "config" | "dataDir" | "listen"> = {
  "--config": "config",
  "--data-dir": "dataDir",
  "--listen": "listen",
};

/**
 * `args` as the flags of `edged run` when they are `[run] (--config F |
 * --data-dir D | --listen A | --supervise)*`, each value given as the next
 * argument or after `=`, and not empty nor starting with `-`; undefined for
 * anything else, which commander then parses (its answers are the only ones).
 */
export function plainRunFlags(args: readonly string[]): RunFlags | undefined {
  const flags: RunFlags = {};
  let i = args[0] === "run" ? 1 : 0;
  while (i < args.length) {
    const arg = args[i++];
    if (arg === "--supervise") {
      flags.supervise = true;
      continue;
    }
    const eq = arg.indexOf("=");
    const name = eq < 0 ? arg : arg.slice(0, eq);
    const key = Object.hasOwn(VALUE_FLAGS, name) ? VALUE_FLAGS[name] : undefined;
    if (key === undefined) return undefined;
    const value = eq < 0 ? args[i++] : arg.slice(eq + 1);
    if (value === undefined || value === "" || value.startsWith("-")) return undefined;
    flags[key] = value;
  }
  return flags;
}

/** Runs the CLI with `args`; resolves with the exit code for usage problems. */
export async function main(args: string[]): Promise<number> {
  const flags = plainRunFlags(args);
  if (flags) return await (await import("./run_command.ts")).runCommand(flags);
  const [{ buildProgram }, { parseCommandLine }] = await Promise.all([
    import("./cli.ts"),
    import("./parse.ts"),
  ]);
  return await parseCommandLine(buildProgram(), args);
}
