/**
 * Writes docs/configuration.md, the reference of every setting, from the
 * configuration schema itself (runtime/config_schema.ts), so the document cannot
 * drift from the code: `deno task config-docs`. A test fails when the
 * committed file differs from what this prints. It writes the schema's plain
 * rules (runtime/_config_rules_table.ts) too, which another test holds to it.
 *
 * @module
 */
import { blockSettings, configRulesModule, configSchema, settings } from "../runtime/schema.ts";
import { Command, parseCli } from "./_cli.ts";

function defaultOf(path: string[]): unknown {
  let cur: unknown = configSchema.parse({});
  for (const key of path) cur = (cur as Record<string, unknown> | undefined)?.[key];
  return cur;
}

function show(v: unknown): string {
  if (v === undefined) return "unset";
  return "`" + JSON.stringify(v) + "`";
}

/** The markdown reference. */
export function configReference(): string {
  const rows = settings().map((s) => {
    const key = s.path.join(".");
    const type = s.options ? s.options.map((o) => `\`${o}\``).join(" \\| ") : s.kind;
    return `| \`${key}\` | \`${s.env}\` | ${type} | ${show(defaultOf(s.path))} |`;
  });
  const blockRows = blockSettings().map((b) => {
    const type = b.options ? b.options.map((o) => `\`${o}\``).join(" \\| ") : b.kind;
    const dflt = b.required ? "required" : show(b.default);
    return `| \`${b.key}\` | ${type} | ${dflt} | ${b.description ?? ""} |`;
  });
  return [
    "# Configuration reference",
    "",
    "Generated from the schema in `runtime/config_schema.ts` by `deno task config-docs`; do not edit.",
    "",
    "Settings come from, lowest first: these defaults, the TOML file (`--config FILE` or",
    "`EDGED_CONFIG`; a dotted name is a key in a `[section]`), the environment variable, then the",
    "flags `--data-dir` and `--listen`. Arrays in the environment are comma-separated; an empty",
    "variable counts as unset. Unknown or invalid settings stop the start (exit code 2) with a message",
    "naming the setting and where it came from. `device_id` unset means the host name;",
    "`modules.memory_budget_bytes` unset means half of the device's memory (or of edged's cgroup",
    "memory limit, if lower);",
    "`modules.max_lag` left at its default is lowered to `store.max_pending_readings` when that is",
    "smaller (set, it may not exceed it). What each setting does is described in",
    "[operators.md](operators.md) and beside its key in `runtime/config_schema.ts`.",
    "",
    "| setting | environment | type | default |",
    "|---|---|---|---|",
    ...rows,
    "",
    "## Southbound adapters",
    "",
    "Arrays of tables, given only in the configuration file (no environment variable reaches them):",
    "`[[adapters.modbus]]` and `[[adapters.opcua]]` blocks, each with its `[[adapters.<kind>.points]]`.",
    "An unknown key or a bad",
    "point stops the start with a message such as",
    "`setting 'adapters.modbus[0].points[2].type' (in edged.toml) [adapter 'plc1', point 'valve']: a",
    "coil point is a bool, got int16`. Adapter names are unique across all kinds, and one device's",
    "metric is read by one adapter only. The protocols are described in",
    "[protocols/modbus/README.md](../protocols/modbus/README.md) and",
    "[protocols/opcua/README.md](../protocols/opcua/README.md); OPC UA security and certificates in",
    "[opcua.md](opcua.md).",
    "",
    "| key | type | default | meaning |",
    "|---|---|---|---|",
    ...blockRows,
    "",
  ].join("\n");
}

if (import.meta.main) {
  const program = new Command("config-docs")
    .description(
      "Write docs/configuration.md and runtime/_config_rules_table.ts from the configuration " +
        "schema (runtime/config_schema.ts); tests fail while the committed files differ.",
    );
  const stop = parseCli(program, Deno.args);
  if (stop !== null) Deno.exit(stop);
  const out = new URL("../docs/configuration.md", import.meta.url);
  await Deno.writeTextFile(out, configReference());
  // The plain rules edged checks a configuration by before it needs zod (runtime/config_rules.ts).
  const rules = new URL("../runtime/_config_rules_table.ts", import.meta.url);
  await Deno.writeTextFile(rules, configRulesModule());
  const fmt = await new Deno.Command(Deno.execPath(), {
    args: ["fmt", out.pathname, rules.pathname],
  }).output();
  if (fmt.code !== 0) Deno.exit(1);
  console.log(`wrote ${out.pathname} and ${rules.pathname}`);
}
