/**
 * `deno task bench [section...] [--quick]`: runs every benchmark section (or
 * the named ones), prints one markdown table and writes it to
 * `bench-report.md`. `--help` lists the sections.
 *
 * @module
 */
import { Command, parseCli } from "../_cli.ts";
import { type BenchOptions, type BenchRow, renderTable } from "./_report.ts";

type Section = (opts: BenchOptions) => Promise<BenchRow[]>;

/** Every `<name>.ts` beside this file (but `mod.ts` and `_*.ts`) is a section exporting `run`. */
function discover(): Record<string, () => Promise<{ run: Section }>> {
  const all: Record<string, () => Promise<{ run: Section }>> = {};
  for (const entry of Deno.readDirSync(new URL(".", import.meta.url))) {
    // Helpers (`_load.ts`, `_parse_only_server.ts`, ...) are not sections:
    // importing a server helper would start it and hang the run.
    const m = /^([a-z0-9][a-z0-9_-]*)\.ts$/.exec(entry.name);
    if (!m || m[1] === "mod") continue;
    all[m[1]] = () => import(`./${entry.name}`);
  }
  return all;
}

if (import.meta.main) {
  const sections = discover();
  const known = Object.keys(sections).sort();
  const program = new Command("bench")
    .description(
      "Benchmarks, each beside its anchor measured in the same run; prints one markdown table " +
        "and writes it to bench-report.md. The full run takes about 10 minutes.",
    )
    .argument("[section...]", `sections to run (default all: ${known.join(", ")})`)
    .option("--quick", "fewer rounds: a smoke run, not numbers to quote");
  const stop = parseCli(program, Deno.args);
  if (stop !== null) Deno.exit(stop);
  const quick = program.opts().quick ?? false;
  const names: string[] = program.args.length > 0 ? program.args : known;
  const unknown = names.filter((n) => !sections[n]);
  if (unknown.length > 0) {
    console.error(`unknown bench section(s): ${unknown.join(", ")}; known: ${known.join(", ")}`);
    Deno.exit(2);
  }
  const cacheDir = new URL("../../.bench-cache/", import.meta.url).pathname;
  await Deno.mkdir(cacheDir, { recursive: true });
  const rows: BenchRow[] = [];
  for (const name of names) {
    console.error(`== bench ${name}${quick ? " (quick)" : ""}`);
    try {
      const mod = await sections[name]();
      const got = await mod.run({ quick, cacheDir });
      rows.push(...got);
      console.error(renderTable(got));
    } catch (err) {
      console.error(`bench ${name} failed: ${(err as Error).stack ?? err}`);
      rows.push({
        section: name,
        metric: "section failed",
        edged: NaN,
        anchor: null,
        anchorName: "",
        unit: "",
        target: "",
        note: String((err as Error).message ?? err).slice(0, 200),
      });
    }
  }
  const table = renderTable(rows);
  const report = `# edged benchmark report\n\n${
    new Date().toISOString()
  }, ${Deno.build.target}, ${navigator.hardwareConcurrency} cores${
    quick ? ", quick mode" : ""
  }\n\n${table}`;
  await Deno.writeTextFile("bench-report.md", report);
  console.log(table);
}
