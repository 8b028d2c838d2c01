/**
 * A small real model (openWakeWord's "hey rhasspy" classifier, fetched from
 * npm for the test) computed through a WAT guest matches the outputs native
 * onnxruntime recorded for the same inputs (scripts/nn/record_reference.ts).
 */
import assert from "node:assert/strict";
import { sha256Hex } from "../../../lib/mod.ts";
import { realModelBytes, realModelInput, REFERENCE_FILE } from "./_real_model.ts";
import { floats, guest, maxDiff, nnEnv, nnManifest, tensorPayload } from "./_helpers.ts";

Deno.test("a real wake-word model through a module matches native onnxruntime within 1e-4", async () => {
  const ref = JSON.parse(await Deno.readTextFile(REFERENCE_FILE));
  const bytes = await realModelBytes();
  assert.equal(
    await sha256Hex(bytes),
    ref.model.sha256,
    "the model the reference was recorded for",
  );
  const e = await nnEnv();
  try {
    const status = await e.nn.install("rhasspy", bytes);
    assert.deepEqual(status.inputs[0].dims, ref.model.dims);
    await e.host.install(
      nnManifest("g", ["rhasspy"], { limits: { max_payload_bytes: 16384 } }),
      await guest(),
    );
    let worst = 0;
    for (let i = 0; i < ref.seeds.length; i++) {
      const x = realModelInput(ref.seeds[i]);
      const out = await e.host.deliver("g", "run/rhasspy", tensorPayload(ref.model.dims, x));
      assert.equal(out.status, 0, JSON.stringify(out.logs));
      worst = Math.max(worst, maxDiff(floats(out.published[0].payload), ref.outputs[i]));
    }
    assert.ok(worst < 1e-4, `largest difference from native onnxruntime: ${worst}`);
  } finally {
    await e.dispose();
  }
});
