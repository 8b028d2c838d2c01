/**
 * A WAT guest runs generated models through wasi_ephemeral_nn in a sandbox
 * Worker; outputs match the plain TypeScript references.
 */
import assert from "node:assert/strict";
import { conv1d, mlp, prng } from "../../../scripts/nn/models.ts";
import { floats, guest, maxDiff, nnEnv, nnManifest, tensorPayload } from "./_helpers.ts";

Deno.test("an MLP and a Conv1D computed through a module match the TypeScript reference within 1e-4", async () => {
  const e = await nnEnv();
  try {
    const m1 = mlp([8, 32, 16, 4], 3);
    const m2 = conv1d({ channels: 2, filters: 4, kernel: 5, length: 32, pad: 2, stride: 2 });
    await e.nn.install("mlp", m1.bytes);
    await e.nn.install("conv", m2.bytes);
    await e.host.install(nnManifest("g", ["mlp", "conv"]), await guest());
    const rnd = prng(11);
    for (const [name, m] of [["mlp", m1], ["conv", m2]] as const) {
      for (let i = 0; i < 5; i++) {
        const n = m.inputDims.reduce((a, b) => a * b, 1);
        const x = Float32Array.from({ length: n }, () => rnd() * 3);
        const out = await e.host.deliver("g", `run/${name}`, tensorPayload(m.inputDims, x));
        assert.equal(out.error, undefined);
        assert.equal(out.status, 0);
        assert.equal(out.published.length, 1);
        assert.equal(out.published[0].topic, `out/${name}`);
        const y = floats(out.published[0].payload);
        assert.ok(maxDiff(y, m.reference(x)) < 1e-4, `${name}: ${maxDiff(y, m.reference(x))}`);
        assert.ok(out.fuelUsed > 1000, `compute is charged fuel (${out.fuelUsed})`);
      }
    }
  } finally {
    await e.dispose();
  }
});
