/**
 * `collectNow` (lib/gc.ts) collects this isolate's garbage when asked: edged
 * calls it once start-up is over, and sandbox Workers after dropping instances.
 */
import assert from "node:assert/strict";
import { collectNow } from "../../lib/mod.ts";

/** A WeakRef to a fresh object nothing else holds (made in its own job). */
async function weakGarbage(): Promise<WeakRef<object>> {
  const ref = new WeakRef({ payload: new Uint8Array(1 << 20) });
  await new Promise((resolve) => setTimeout(resolve, 0)); // WeakRef targets live to the job's end
  return ref;
}

Deno.test("collectNow frees an object nothing holds", async () => {
  const ref = await weakGarbage();
  assert.equal(collectNow(), true);
  assert.equal(ref.deref() === undefined, true, "the object survived the collection");
});
