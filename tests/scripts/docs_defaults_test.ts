/**
 * A documented default that differs from the code is a bug (issue 13, L5).
 * docs/configuration.md is generated from the schema (config_reference_test);
 * this test reads the defaults written by hand everywhere else: the README's
 * configuration example, the settings table of docs/operators.md, every
 * "`setting` (value)" and "`setting` ... (default value)" in README.md and
 * docs/, and the manifest table of docs/modules.md, and compares each with
 * the zod schemas' defaults.
 */
import assert from "node:assert/strict";
import { parse as parseToml } from "smol-toml";
import { configSchema, settings } from "../../runtime/schema.ts";
import { manifestSchema } from "../../sandbox/manifest.ts";

const ROOT = new URL("../../", import.meta.url);
const read = (path: string) => Deno.readTextFileSync(new URL(path, ROOT));
const DOCS = [
  "README.md",
  ...[...Deno.readDirSync(new URL("docs/", ROOT))].filter((e) => e.name.endsWith(".md"))
    .map((e) => `docs/${e.name}`),
].filter((p) => p !== "docs/configuration.md");

const UNSET = Symbol("unset");
const CONFIG_DEFAULTS = configSchema.parse({}) as Record<string, unknown>;
const KNOWN = new Set(settings().map((s) => s.path.join(".")));

function at(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const key of path.split(".")) {
    cur = (cur as Record<string, unknown> | undefined)?.[key];
  }
  return cur === undefined ? UNSET : cur;
}

const UNITS: Record<string, number> = { KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };

/** A default as the docs write it: `1048576`, 16 MiB, 10 000 000, 120 s, `true`, `[]`, none. */
function docValue(text: string): unknown {
  const t = text.replace(/`/g, "").replace(/ by default$/, "").trim();
  if (/^(none|unset|generated|host name|–|-|no kv)$/i.test(t)) return UNSET;
  const n = /^(\d[\d ,_]*(?:\.\d+)?)\s*(KiB|MiB|GiB|s)?(?:\/s)?$/.exec(t);
  if (n) return Number(n[1].replace(/[ ,_]/g, "")) * (UNITS[n[2]] ?? 1);
  try {
    return JSON.parse(t);
  } catch {
    return t; // a bare string: an enum value or an address
  }
}

function check(where: string, key: string, documented: unknown, actual: unknown) {
  assert.deepEqual(
    documented,
    actual,
    `${where}: \`${key}\` is documented as ${String(documented)}, the code's default is ${
      String(actual)
    }`,
  );
}

Deno.test("docs: the README's configuration example shows the code's defaults", () => {
  const readme = read("README.md");
  const block = /## Configuration[\s\S]*?```toml\n([\s\S]*?)```/.exec(readme)![1];
  const toml = parseToml(block) as Record<string, unknown>;
  let n = 0;
  const walk = (obj: Record<string, unknown>, prefix: string[]) => {
    for (const [k, v] of Object.entries(obj)) {
      const path = [...prefix, k];
      if (v && typeof v === "object" && !Array.isArray(v)) {
        walk(v as Record<string, unknown>, path);
      } else {
        n++;
        check("README.md", path.join("."), v, at(CONFIG_DEFAULTS, path.join(".")));
      }
    }
  };
  walk(toml, []);
  assert.ok(n >= 15, `only ${n} settings in the README's example`);
});

Deno.test("docs: the settings table of docs/operators.md shows the code's defaults", () => {
  const text = read("docs/operators.md");
  const table = /\| setting +\| default +\| what +\|\n\|[-| ]+\|\n((?:\|.*\|\n)+)/.exec(text)![1];
  let n = 0;
  for (const row of table.trim().split("\n")) {
    const [keys, value] = row.split("|").slice(1, 3);
    const documented = docValue(value.replace(/\(.*\)/, ""));
    for (const [, key] of keys.matchAll(/`([a-z_.]+)`/g)) {
      if (!KNOWN.has(key)) continue;
      n++;
      check("docs/operators.md settings table", key, documented, at(CONFIG_DEFAULTS, key));
    }
  }
  assert.ok(n >= 10, `only ${n} settings in the table`);
});

/**
 * "`update.max_boot_attempts` starts (default 3)", "`mqtt.commands.allow_apply` (`false`)",
 * "`http.header_timeout_s` (10 s; else 408)"; a bare parenthesis counts when it starts with a
 * digit ("`update.timeout_s` (metadata too)" is prose).
 */
const BESIDE =
  /`([a-z_]+(?:\.[a-z_]+)+)`(?: \(`([^`]+)`| \((\d[^();,`]*)[);,]|[^`()]{0,80}\(default ([^)]+)\))/g;

Deno.test("docs: every default written beside a setting in README.md and docs/ is the code's", () => {
  let n = 0;
  for (const doc of DOCS) {
    const text = read(doc).replace(/\s+/g, " ");
    for (const m of text.matchAll(BESIDE)) {
      const key = m[1];
      const raw = m[2] ?? (m[3] ?? m[4]).replace(/, .*$/, "").trim();
      if (!KNOWN.has(key) || /^EDGED_/.test(raw)) continue;
      n++;
      check(doc, key, docValue(raw), at(CONFIG_DEFAULTS, key));
    }
  }
  assert.ok(n >= 10, `only ${n} defaults found in prose`);
});

Deno.test("docs: the manifest table of docs/modules.md shows the manifest schema's defaults", () => {
  const text = read("docs/modules.md");
  const table = /\| field +\| default +\| rule +\|\n\|[-| ]+\|\n((?:\|.*\|\n)+)/.exec(text)![1];
  const defaults = manifestSchema.parse({ name: "x", version: "1.0.0" });
  let n = 0;
  for (const row of table.trim().split("\n")) {
    const [field, value] = row.split("|").slice(1, 3).map((c) => c.trim());
    const key = /^`([a-z_.]+)`$/.exec(field)?.[1];
    if (!key || key === "name" || key === "version") continue;
    n++;
    // "no kv": without `grants.kv` a module has no kv store at all.
    const actual = key === "grants.kv.max_bytes" ? at(defaults, "grants.kv") : at(defaults, key);
    check("docs/modules.md manifest table", key, docValue(value), actual);
  }
  assert.ok(n >= 10, `only ${n} manifest fields in the table`);
});

Deno.test("docs: the forms the docs write defaults in are read as meant", () => {
  assert.equal(docValue("`1048576`"), 1048576);
  assert.equal(docValue("16 MiB"), 16 * 1024 * 1024);
  assert.equal(docValue("10 000 000"), 10_000_000);
  assert.equal(docValue("120 s"), 120);
  assert.equal(docValue("8 KiB/s by default"), 8192);
  assert.equal(docValue("`false`"), false);
  assert.deepEqual(docValue('`["ping", "update-check"]`'), ["ping", "update-check"]);
  assert.equal(docValue("`refuse-new`"), "refuse-new");
  assert.equal(docValue("none"), UNSET);
  // The pattern finds a default beside its setting in each of the ways the docs write it.
  const found = [
    ..."`modules.fault_limit` consecutive faults (default 3) and `mqtt.url` (`EDGED_MQTT_URL`)"
      .matchAll(BESIDE),
    ..."`http.header_timeout_s` (10 s; else 408), `update.auto_apply` (`true`)".matchAll(BESIDE),
    ..."`update.timeout_s` (metadata too)".matchAll(BESIDE),
  ].map((m) => [m[1], m[2] ?? m[3] ?? m[4]]);
  assert.deepEqual(found, [
    ["modules.fault_limit", "3"],
    ["mqtt.url", "EDGED_MQTT_URL"],
    ["http.header_timeout_s", "10 s"],
    ["update.auto_apply", "true"],
  ]);
});
