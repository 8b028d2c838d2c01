/**
 * The short CI form of `deno task crash`: a few kill -9 cycles of each
 * scenario (ingest, module effects, module swap, update). Every invariant
 * violation fails.
 */
import assert from "node:assert/strict";
import { SCENARIOS, summarizeCrash } from "../../scripts/crash/mod.ts";

const TRIALS: Record<string, number> = { ingest: 3, module: 3, swap: 3, update: 1 };

for (const [name, run] of Object.entries(SCENARIOS)) {
  Deno.test({
    name: `crash ${name}: ${TRIALS[name]} kill -9 cycles keep every invariant`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const r = await run({ trials: TRIALS[name] ?? 2, seed: 20261121 });
      console.log(summarizeCrash(r));
      assert.equal(r.trials, TRIALS[name] ?? 2);
      assert.deepEqual(r.violations, []);
    },
  });
}

Deno.test({
  name:
    "regression: a first module install torn before 'current' leaves no module (not a failed one)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { startEdged } = await import("../_helpers/edged.ts");
    const dataDir = await Deno.makeTempDir({ prefix: "edged-proof-torn-" });
    try {
      // What a kill -9 between the version files and `current` leaves behind.
      const dir = `${dataDir}/modules/torn/${"ab".repeat(32)}`;
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeTextFile(`${dir}/manifest.json`, '{"name":"torn","version":"1.0.0"}');
      await Deno.writeFile(`${dir}/module.wasm`, new Uint8Array([0, 0x61, 0x73]));
      const edged = await startEdged({ dataDir });
      try {
        const res = await edged.api("/api/v1/modules/torn");
        await res.body?.cancel();
        assert.equal(res.status, 404);
      } finally {
        await edged.stop();
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
