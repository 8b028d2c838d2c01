/**
 * Bounded resources: a model swapped again and again while a module uses it
 * (short here; `deno task soak-nn` runs the long variant), and the engine's
 * memory cap.
 */
import assert from "node:assert/strict";
import { mlp } from "../../../scripts/nn/models.ts";
import type { SoakResult } from "../../../scripts/nn/soak.ts";
import { ModelInvalidError } from "../../../sandbox/nn/mod.ts";
import { floats, guest, maxDiff, nnEnv, nnManifest, tensorPayload } from "./_helpers.ts";

Deno.test("40 model swaps under use: every call answers, the engine's heap stays flat, RSS growth is bounded", async () => {
  // In a process of its own: RSS is per process, and the tests run in parallel.
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "--unstable-worker-options",
      "--v8-flags=--expose-gc",
      new URL("../../../scripts/nn/soak.ts", import.meta.url).pathname,
      ...["--swaps", "40", "--warmup", "10", "--calls", "3", "--json"],
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const r = JSON.parse(
    new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!,
  ) as SoakResult;
  assert.equal(r.failures, 0);
  // The leak detectors: the engine's wasm heap never shrinks, so a session kept per swap
  // (~1.3 MiB here) would show; the JS heaps are measured after a collection.
  assert.ok(
    r.heapFinalMiB <= r.heapBaselineMiB + 4,
    `engine heap ${r.heapBaselineMiB} → ${r.heapFinalMiB} MiB`,
  );
  assert.ok(r.engineJsFinalMiB <= r.engineJsBaselineMiB + 8, `engine JS ${JSON.stringify(r)}`);
  assert.ok(r.mainJsFinalMiB <= r.mainJsBaselineMiB + 8, `main JS ${JSON.stringify(r)}`);
  // RSS follows the collectors' timing (tens of MiB on a loaded machine over a short run):
  // bounded here against gross growth only; deno task soak-nn shows the long trend.
  assert.ok(r.growthMiB < 128, `RSS grew ${r.growthMiB.toFixed(1)} MiB over ${r.swaps} swaps`);
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
