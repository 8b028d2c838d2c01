/**
 * The bundle `deno task compile` embeds (`scripts/bundle.ts`) runs edged as
 * the source does, with no deno.json: it becomes ready, takes a reading, and
 * starts a module's Worker from the bundle's own entry, whose effect (an
 * alert) reaches the bus.
 */
import assert from "node:assert/strict";
import { buildBundle, BundleError } from "../../scripts/bundle.ts";
import { startEdged } from "../_helpers/edged.ts";

const THRESHOLD = new URL("../../examples/modules/threshold-alert-c", import.meta.url).pathname;

function counter(metrics: string, line: string): number {
  const hit = metrics.split("\n").find((l) => l.startsWith(line + " "));
  return hit ? Number(hit.slice(line.length + 1)) : 0;
}

Deno.test("bundle: edged runs from the bundle with no deno.json, its module Worker too", async () => {
  const dir = await Deno.makeTempDir({ prefix: "edged-bundle-" });
  try {
    const { files } = await buildBundle(dir);
    assert.ok(files.includes("main.js") && files.includes("sandbox/worker.js"), files.join(" "));
    const edged = await startEdged({ bundle: dir, env: { EDGED_MODULES_PRELOAD: THRESHOLD } });
    try {
      const res = await edged.api("/api/v1/data", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ device_id: "pump-7", metric: "temperature", value: 81.5 }),
      });
      assert.equal(res.status, 202, await res.text());
      const out = 'edged_module_messages_total{module="threshold-alert",direction="out"}';
      let seen = 0;
      for (let i = 0; i < 200 && seen < 1; i++) {
        seen = counter(await (await fetch(`${edged.url}/metrics`)).text(), out);
        if (seen < 1) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(seen, 1, "the module's alert for a reading above its threshold");
    } finally {
      assert.equal(await edged.stop(), 0);
      await Deno.remove(edged.dataDir, { recursive: true });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bundle: never replaces a directory that holds something other than a bundle", async () => {
  const dir = await Deno.makeTempDir({ prefix: "edged-not-a-bundle-" });
  try {
    await Deno.writeTextFile(`${dir}/notes.txt`, "mine");
    await assert.rejects(buildBundle(dir), BundleError);
    assert.equal(await Deno.readTextFile(`${dir}/notes.txt`), "mine");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["notes.txt"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
