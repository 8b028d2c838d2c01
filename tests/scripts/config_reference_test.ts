import assert from "node:assert/strict";
import { configReference } from "../../scripts/config_reference.ts";
import { settings } from "../../runtime/schema.ts";

Deno.test("docs/configuration.md lists every setting, as the schema defines it", async () => {
  const committed = await Deno.readTextFile(
    new URL("../../docs/configuration.md", import.meta.url),
  );
  // deno fmt re-wraps prose and pads table cells: compare with white space folded.
  const squash = (s: string) => s.replace(/\s+/g, "").replace(/-+/g, "-");
  assert.equal(squash(committed), squash(configReference()), "run `deno task config-docs`");
  for (const s of settings()) assert.ok(committed.includes(`\`${s.env}\``), s.env);
});
