import assert from "node:assert/strict";
import { workerEntry } from "../../lib/mod.ts";

Deno.test("workerEntry: beside the source files, or from the bundle's root", async () => {
  // From source: resolved through the caller's own place in the repository.
  const fromSource = workerEntry(
    "file:///opt/edged/sandbox/nn/engine.ts",
    "sandbox/nn/engine.ts",
    "sandbox/nn/engine_worker.ts",
  );
  assert.equal(fromSource.href, "file:///opt/edged/sandbox/nn/engine_worker.ts");
  assert.equal(
    workerEntry(
      "file:///opt/edged/runtime/checkpoint.ts",
      "runtime/checkpoint.ts",
      "sandbox/worker.ts",
    )
      .href,
    "file:///opt/edged/sandbox/worker.ts",
  );
  // From the bundle: the caller is a chunk at its root.
  assert.equal(
    workerEntry("file:///b/chunk-ABC.js", "sandbox/pool.ts", "sandbox/worker.ts").href,
    "file:///b/sandbox/worker.js",
  );
  assert.throws(
    () => workerEntry("file:///b/x.js", "sandbox/pool.ts", "sandbox/worker"),
    RangeError,
  );
  // The real callers find their real entries.
  const root = new URL("../../", import.meta.url);
  for (
    const path of [
      "sandbox/worker.ts",
      "sandbox/nn/engine_worker.ts",
      "runtime/checkpoint_worker.ts",
    ]
  ) {
    const url = workerEntry(new URL("sandbox/pool.ts", root).href, "sandbox/pool.ts", path);
    await Deno.stat(url);
  }
});
