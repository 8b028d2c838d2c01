/**
 * `deno task crash`: crash-consistency loops. Each scenario kills edged with
 * SIGKILL at random moments during its work, starts it again on the same
 * data directory and checks the invariants (see each scenario's file).
 *
 * ```sh
 * deno task crash                                # every scenario, 20 trials each
 * deno task crash --scenario ingest --trials 200 --seed 3
 * ```
 *
 * Exit code 1 when any invariant broke.
 *
 * @module
 */
import { Command, parseCli } from "../_cli.ts";
import type { CrashOptions, CrashReport } from "./_common.ts";
import { ingestCrash } from "./ingest.ts";
import { moduleCrash } from "./module.ts";
import { swapCrash } from "./swap.ts";
import { updateCrash } from "./update.ts";

export type { CrashOptions, CrashReport };

/** Every scenario by name. */
export const SCENARIOS: Record<string, (o: CrashOptions) => Promise<CrashReport>> = {
  ingest: ingestCrash,
  module: moduleCrash,
  swap: swapCrash,
  update: updateCrash,
};

/** One line per scenario: trials, violations and counts. */
export function summarizeCrash(r: CrashReport): string {
  const stats = Object.entries(r.stats).map(([k, v]) => `${k} ${v}`).join(", ");
  return `${r.scenario}: ${r.trials} trials, ${r.violations.length} violations; ${stats}` +
    (r.notes.length ? `\n  notes: ${r.notes.join("; ")}` : "");
}

async function main(args: string[]): Promise<number> {
  const program = new Command("crash")
    .description("kill -9 edged at random moments and check its invariants after each restart")
    .option("--scenario <names...>", `scenarios (${Object.keys(SCENARIOS).join(", ")})`)
    .option("--trials <n>", "kill-and-restart cycles per scenario", "20")
    .option("--seed <n>", "PRNG seed", "1")
    .option("--quiet", "no progress lines");
  const stop = parseCli(program, args);
  if (stop !== null) return stop;
  const o = program.opts();
  const names: string[] = o.scenario ?? Object.keys(SCENARIOS);
  const trials = Number(o.trials);
  const seed = Number(o.seed);
  if (names.some((n) => !SCENARIOS[n]) || !(trials >= 1) || !Number.isFinite(seed)) {
    console.error(`usage: --scenario ${Object.keys(SCENARIOS).join("|")} --trials N>=1 --seed N`);
    return 2;
  }
  let violations = 0;
  for (const name of names) {
    const r = await SCENARIOS[name]({ trials, seed, log: o.quiet ? undefined : console.error });
    console.log(summarizeCrash(r));
    for (const v of r.violations) console.log(`  VIOLATION ${v}`);
    violations += r.violations.length;
  }
  return violations > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
