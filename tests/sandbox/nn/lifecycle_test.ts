/**
 * The engine runs only while it is needed: not for modules without `nn`,
 * briefly to validate a model, while a module granted `nn` is loaded; it
 * stops after the last one is removed and starts again for the next.
 */
import assert from "node:assert/strict";
import { mlp } from "../../../scripts/nn/models.ts";
import { manifest, module, until } from "../_helpers.ts";
import { guest, nnEnv, nnManifest, tensorPayload } from "./_helpers.ts";

Deno.test("the engine starts for a module granted nn and stops after the last one is gone", async () => {
  const e = await nnEnv({ idleStopMs: 50 });
  try {
    await e.host.install(
      manifest("plain"),
      await module(
        `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (i32.const 0))`,
      ),
    );
    assert.equal(e.nn.engine.running, false, "a module without nn starts no engine");
    await e.nn.install("m", mlp([8, 4]).bytes);
    await until(() => !e.nn.engine.running, 5000); // it ran to validate the model, then stopped
    await e.host.install(nnManifest("g", ["m"]), await guest());
    assert.equal(e.nn.engine.running, true);
    const p = tensorPayload([1, 8], new Float32Array(8));
    assert.equal((await e.host.deliver("g", "run/m", p)).status, 0);
    await e.host.remove("g");
    await until(() => !e.nn.engine.running, 5000);
    assert.equal((await e.nn.engineStatus()).heap_bytes, 0);
    await e.host.install(nnManifest("g2", ["m"]), await guest());
    assert.equal((await e.host.deliver("g2", "run/m", p)).status, 0, "a new engine serves it");
  } finally {
    await e.dispose();
  }
});
