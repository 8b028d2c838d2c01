/**
 * The engine's own contract: the warm-up model is what the generator
 * writes, the pinned onnxruntime-web version is deno.json's, a model's
 * inputs and outputs are reported, a bad model is refused with onnxruntime's
 * reason, and the memory cap has a floor.
 */
import assert from "node:assert/strict";
import { encodeModel } from "../../../scripts/nn/onnx_writer.ts";
import { conv1d } from "../../../scripts/nn/models.ts";
import { WARMUP_MODEL } from "../../../sandbox/nn/_warmup.ts";
import { EngineError, ORT_VERSION } from "../../../sandbox/nn/mod.ts";
import { NnEngine } from "../../../sandbox/nn/engine.ts";
import denoJson from "../../../deno.json" with { type: "json" };

Deno.test("the warm-up model is the generator's identity model; the engine version is deno.json's pin", () => {
  assert.deepEqual(
    WARMUP_MODEL,
    encodeModel({
      inputs: [{ name: "x", dims: [] }],
      outputs: [{ name: "y", dims: [] }],
      initializers: [],
      nodes: [{ op: "Identity", inputs: ["x"], outputs: ["y"] }],
    }),
  );
  assert.equal(denoJson.imports["onnxruntime-web"], `npm:onnxruntime-web@${ORT_VERSION}`);
});

Deno.test("the engine reports a model's inputs, outputs and cost, and refuses a bad one with the reason", async () => {
  assert.throws(() => new NnEngine({ memoryBytes: 1 << 20 }), RangeError);
  const engine = new NnEngine({ memoryBytes: 64 << 20 });
  try {
    const m = conv1d({ channels: 3, filters: 5, kernel: 3, length: 20 });
    const { info, cost } = await engine.validate(m.bytes);
    assert.deepEqual(info, {
      inputs: [{ name: "signal", type: "float32", dims: [1, 3, 20] }],
      outputs: [{ name: "features", type: "float32", dims: [1, 5, 18] }],
    });
    assert.ok(cost && cost.ms > 0 && cost.elements === 60, JSON.stringify(cost));
    assert.ok(engine.startMs > 0);
    await assert.rejects(engine.validate(m.bytes.subarray(0, 40)), (err: EngineError) => {
      assert.ok(err instanceof EngineError);
      assert.match(err.message, /Can't create a session/);
      return true;
    });
    const s = await engine.stats();
    assert.ok(s.heapBytes > 0 && s.heapBytes <= 64 << 20);
  } finally {
    engine.stop();
  }
});
