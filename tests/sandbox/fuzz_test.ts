/**
 * Mutated modules: whatever the bytes, loading ends in a module or a
 * ModuleValidationError with reasons; never another exception or a hang.
 */
import assert from "node:assert/strict";
import { ModuleFault, ModuleValidationError } from "../../sandbox/mod.ts";
import { validateModule } from "../../sandbox/validate.ts";
import { GuestInstance } from "../../sandbox/instance.ts";
import { enc, manifest } from "./_helpers.ts";

/** Mutations per source module (EDGED_FUZZ_ITER to run more). */
const ITER = Number(Deno.env.get("EDGED_FUZZ_ITER") ?? 170);
const ROOT = new URL("../../examples/modules/", import.meta.url).pathname;

/** A small deterministic PRNG (mulberry32) so a failure can be replayed. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("mutated real modules are loaded or refused with reasons, never crash", async () => {
  const sources = ["threshold-alert-c", "moving-average-as", "relay-wat"];
  const m = manifest("fuzz", {
    grants: { log: true, publish: ["#"], kv: { max_bytes: 1024 }, clock: true, wasi: true },
    limits: { memory_bytes: 4 << 20, fuel_per_message: 100_000 },
  });
  let loaded = 0;
  let refused = 0;
  for (const [i, name] of sources.entries()) {
    const good = await Deno.readFile(`${ROOT}${name}/module.wasm`);
    const random = rng(1234 + i);
    for (let n = 0; n < ITER; n++) {
      const bytes = good.slice();
      const flips = 1 + Math.floor(random() * 4);
      for (let f = 0; f < flips; f++) {
        const at = 8 + Math.floor(random() * (bytes.length - 8));
        bytes[at] = Math.floor(random() * 256);
      }
      const cut = random() < 0.1 ? bytes.subarray(0, Math.floor(random() * bytes.length)) : bytes;
      try {
        const v = await validateModule(cut, m);
        try {
          GuestInstance.create(v, { logSink: () => {} }).call(enc("t"), enc("{}"));
        } catch (err) {
          assert.ok(err instanceof ModuleFault, `${name} #${n}: ${err}`);
        }
        loaded++;
      } catch (err) {
        assert.ok(err instanceof ModuleValidationError, `${name} #${n}: ${err}`);
        assert.ok(err.reasons.length > 0);
        refused++;
      }
    }
  }
  assert.equal(loaded + refused, ITER * sources.length);
  assert.ok(refused > 0);
});
