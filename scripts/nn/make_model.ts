/**
 * Writes a generated model to a file:
 *
 *     deno run --allow-write scripts/nn/make_model.ts window-scorer OUT.onnx
 *     deno run --allow-write scripts/nn/make_model.ts mlp OUT.onnx 8,32,4 [SEED]
 *     deno run --allow-write scripts/nn/make_model.ts conv1d OUT.onnx C,F,K,L [SEED]
 *
 * @module
 */

import { conv1d, mlp, windowScorer } from "./models.ts";

const [kind, out, spec, seed] = Deno.args;
const nums = (s: string | undefined) => (s ?? "").split(",").filter(Boolean).map(Number);
let bytes: Uint8Array;
switch (kind) {
  case "window-scorer":
    bytes = windowScorer(Number(spec ?? 16)).bytes;
    break;
  case "mlp":
    bytes = mlp(nums(spec), Number(seed ?? 1)).bytes;
    break;
  case "conv1d": {
    const [channels, filters, kernel, length] = nums(spec);
    bytes = conv1d({ channels, filters, kernel, length, seed: Number(seed ?? 7) }).bytes;
    break;
  }
  default:
    console.error("usage: make_model.ts window-scorer|mlp|conv1d OUT.onnx [SPEC] [SEED]");
    Deno.exit(2);
}
if (!out) {
  console.error("usage: make_model.ts window-scorer|mlp|conv1d OUT.onnx [SPEC] [SEED]");
  Deno.exit(2);
}
await Deno.writeFile(out, bytes);
console.log(`${out}: ${bytes.length} bytes`);
