/**
 * The short CI form of `deno task crash`: a few kill -9 cycles of each
 * scenario (ingest, module swap, update). Every invariant violation fails.
 */
import assert from "node:assert/strict";
import { SCENARIOS, summarizeCrash } from "../../scripts/crash/mod.ts";

const TRIALS: Record<string, number> = { ingest: 3, module: 3, update: 1 };

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
