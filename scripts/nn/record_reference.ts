/**
 * Records the expected outputs of the tests' real model
 * (`tests/sandbox/nn/_real_model.ts`) with native onnxruntime
 * (onnxruntime-node, a test-only reference: never imported by edged), once:
 *
 *     deno run --allow-all scripts/nn/record_reference.ts
 *
 * writes `tests/sandbox/nn/fixtures/hey_rhasspy_reference.json`. The import
 * is dynamic so that type-checking the scripts does not fetch the 290 MB
 * native package.
 *
 * @module
 */

import {
  REAL_MODEL,
  realModelBytes,
  realModelInput,
  REFERENCE_FILE,
  SEEDS,
} from "../../tests/sandbox/nn/_real_model.ts";
import { sha256Hex } from "../../lib/mod.ts";

const NODE_ORT = "onnxruntime-node";
const ort = await import(NODE_ORT) as {
  InferenceSession: {
    create(bytes: Uint8Array): Promise<{
      inputNames: string[];
      outputNames: string[];
      run(feeds: Record<string, unknown>): Promise<Record<string, { data: Float32Array }>>;
      release(): Promise<void>;
    }>;
  };
  Tensor: new (type: string, data: Float32Array, dims: readonly number[]) => unknown;
  env: { versions: { node: string } };
};
const bytes = await realModelBytes();
const session = await ort.InferenceSession.create(bytes);
const outputs: number[][] = [];
for (const seed of SEEDS) {
  const x = realModelInput(seed);
  const r = await session.run({
    [session.inputNames[0]]: new ort.Tensor("float32", x, REAL_MODEL.dims),
  });
  outputs.push(Array.from(r[session.outputNames[0]].data));
}
await session.release();
const record = {
  model: { ...REAL_MODEL, sha256: await sha256Hex(bytes) },
  recorded_with: `onnxruntime-node ${ort.env.versions.node} (native CPU)`,
  inputs: "realModelInput(seed) of tests/sandbox/nn/_real_model.ts",
  seeds: SEEDS,
  outputs,
};
await Deno.writeTextFile(REFERENCE_FILE, JSON.stringify(record, null, 2) + "\n");
console.log(`wrote ${REFERENCE_FILE.pathname}: ${JSON.stringify(outputs)}`);
