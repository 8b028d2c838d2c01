/**
 * Bounded resources: a model swapped again and again while a module uses it
 * (short here; `deno task soak-nn` runs the long variant), and the engine's
 * memory cap.
 */
import assert from "node:assert/strict";
import { mlp } from "../../../scripts/nn/models.ts";
import { modelSwapSoak } from "../../../scripts/nn/soak.ts";
import { ModelInvalidError } from "../../../sandbox/nn/mod.ts";
import { floats, guest, maxDiff, nnEnv, nnManifest, tensorPayload } from "./_helpers.ts";

Deno.test("40 model swaps under use: every call answers, the engine's heap stays flat, RSS growth is bounded", async () => {
  const r = await modelSwapSoak({ swaps: 40, warmup: 10, calls: 3, wasm: await guest() });
  assert.equal(r.failures, 0);
  assert.ok(
    r.heapFinalMiB <= r.heapBaselineMiB + 4,
    `engine heap ${r.heapBaselineMiB} → ${r.heapFinalMiB} MiB`,
  );
  // Measured here: 4-10 MiB over 200 swaps; a leaked session (~1.3 MiB each) would pass 48.
  assert.ok(r.growthMiB < 32, `RSS grew ${r.growthMiB.toFixed(1)} MiB over ${r.swaps} swaps`);
});

Deno.test("the engine's memory is capped: a model too big for nn.memory_bytes is refused with the reason, the engine keeps working", async () => {
  const e = await nnEnv({ memoryBytes: 32 << 20 });
  try {
    // 48 MB of weights cannot fit a 32 MiB heap.
    const big = mlp([3072, 4096, 2], 4);
    await assert.rejects(e.nn.install("big", big.bytes), (err: ModelInvalidError) => {
      assert.ok(err instanceof ModelInvalidError);
      assert.match(err.reason, /the engine cannot load it: .*(bad_alloc|allocate|memory|Aborted)/i);
      return true;
    });
    const s = await e.nn.engineStatus();
    assert.ok(s.heap_bytes <= 32 << 20, `heap ${s.heap_bytes}`);
    await assert.rejects(e.nn.get("big"));
    const small = mlp([8, 16, 4], 5);
    await e.nn.install("small", small.bytes);
    await e.host.install(nnManifest("g", ["small"]), await guest());
    const x = Float32Array.from({ length: 8 }, (_, i) => i / 8);
    const out = await e.host.deliver("g", "run/small", tensorPayload([1, 8], x));
    assert.equal(out.status, 0);
    assert.ok(maxDiff(floats(out.published[0].payload), small.reference(x)) < 1e-4);
  } finally {
    await e.dispose();
  }
});
