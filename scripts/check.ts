/**
 * `deno task check`: `deno fmt --check`, `deno lint` and `deno check` of the
 * entry point, the scripts and the tests, in that order; stops at the first
 * that fails.
 *
 * @module
 */
import { Command, parseCli } from "./_cli.ts";

/** The three steps, each a `deno` command line. */
export const STEPS: readonly string[][] = [
  ["fmt", "--check"],
  ["lint"],
  ["check", "main.ts", "scripts/", "tests/"],
];

if (import.meta.main) {
  const program = new Command("check")
    .description(
      `Formatting, lint and type check: ${STEPS.map((s) => `deno ${s.join(" ")}`).join(", ")}.`,
    );
  const stop = parseCli(program, Deno.args);
  if (stop !== null) Deno.exit(stop);
  const root = new URL("../", import.meta.url).pathname;
  for (const step of STEPS) {
    const { code } = await new Deno.Command(Deno.execPath(), { args: step, cwd: root }).spawn()
      .status;
    if (code !== 0) Deno.exit(code);
  }
}
