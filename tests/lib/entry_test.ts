import assert from "node:assert/strict";
import { entryIn, workerEntry } from "../../lib/mod.ts";

Deno.test("workerEntry: beside the source files, or at its .js path from the bundle's root", async () => {
  // From source: the entry's own path under the repository's root.
  assert.equal(
    entryIn(new URL("file:///opt/edged/"), true, "sandbox/nn/engine_worker.ts").href,
    "file:///opt/edged/sandbox/nn/engine_worker.ts",
  );
  // From the bundle: the same path with .js under the bundle's root.
  assert.equal(
    entryIn(new URL("file:///b/"), false, "sandbox/worker.ts").href,
    "file:///b/sandbox/worker.js",
  );
  assert.throws(() => entryIn(new URL("file:///b/"), false, "sandbox/worker"), RangeError);
  // Run from source here: the real entries are found where they are.
  const root = new URL("../../", import.meta.url);
  for (
    const path of [
      "sandbox/worker.ts",
      "sandbox/nn/engine_worker.ts",
      "runtime/checkpoint_worker.ts",
    ]
  ) {
    assert.equal(workerEntry(path).href, new URL(path, root).href);
    await Deno.stat(workerEntry(path));
  }
});
