/**
 * Every input that ever broke something, replayed through its fuzz target
 * (`tests/proof/regressions/<target>/*.bin`). Inputs whose bug is not fixed
 * yet are listed in `KNOWN.json` (file name to reason) and run as ignored
 * tests, so CI stays green and the list stays visible.
 */
import assert from "node:assert/strict";
import { replay, TARGETS } from "../../scripts/fuzz/mod.ts";

const DIR = new URL("./regressions/", import.meta.url);
const known: Record<string, string> = JSON.parse(
  await Deno.readTextFile(new URL("KNOWN.json", DIR)).catch(() => "{}"),
);

for (const entry of [...Deno.readDirSync(DIR)].sort((a, b) => a.name.localeCompare(b.name))) {
  if (!entry.isDirectory || !TARGETS[entry.name]) continue;
  const target = entry.name;
  const files = [...Deno.readDirSync(new URL(`${target}/`, DIR))]
    .map((e) => e.name).filter((n) => n.endsWith(".bin")).sort();
  for (const file of files) {
    const key = `${target}/${file}`;
    Deno.test({
      name: `regression ${key}${known[key] ? ` (KNOWN, not fixed: ${known[key]})` : ""}`,
      ignore: known[key] !== undefined,
      fn: async () => {
        const input = await Deno.readFile(new URL(`${target}/${file}`, DIR));
        const findings = await replay(target, [input], { timeoutMs: 10_000 });
        assert.deepEqual(
          findings.map((f) => `${f.kind} ${f.label}: ${f.message}`),
          [],
          `deno task fuzz --target ${target} --replay tests/proof/regressions/${key}`,
        );
      },
    });
  }
}
