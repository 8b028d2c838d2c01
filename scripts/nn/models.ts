/**
 * Generated ONNX models with plain TypeScript references: an MLP
 * (MatMul, Add, Relu) and a Conv1D (Conv, Relu), with seeded weights, plus the
 * example module's window scorer. Tests check the engine's outputs against
 * the references; the bench and the example build use the same models.
 *
 * @module
 */

import { encodeModel, type Graph } from "./onnx_writer.ts";

/** A seeded PRNG (mulberry32) giving floats in [-1, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

function randomArray(n: number, rnd: () => number, scale: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rnd() * scale;
  return a;
}

/** A generated model with its reference implementation. */
export interface ReferenceModel {
  bytes: Uint8Array;
  /** Input shape for a batch of one. */
  inputDims: number[];
  outputDims: number[];
  /** The same function in plain TypeScript (float64 arithmetic, batch of one). */
  reference(x: Float32Array): Float32Array;
}

/**
 * An MLP `sizes[0] → sizes[1] → … → sizes[n]` with ReLU between layers
 * (none after the last). The batch dimension is symbolic ("N").
 */
export function mlp(sizes: number[], seed = 1): ReferenceModel {
  if (sizes.length < 2) throw new RangeError(`an MLP needs at least 2 sizes, got ${sizes.length}`);
  const rnd = prng(seed);
  const layers = sizes.slice(1).map((out, i) => {
    const inp = sizes[i];
    return {
      inp,
      out,
      w: randomArray(inp * out, rnd, 1 / Math.sqrt(inp)),
      b: randomArray(out, rnd, 0.1),
    };
  });
  const g: Graph = {
    inputs: [{ name: "x", dims: ["N", sizes[0]] }],
    outputs: [{ name: "y", dims: ["N", sizes.at(-1)!] }],
    initializers: layers.flatMap((l, i) => [
      { name: `w${i}`, dims: [l.inp, l.out], data: l.w },
      { name: `b${i}`, dims: [l.out], data: l.b },
    ]),
    nodes: [],
  };
  let cur = "x";
  layers.forEach((_, i) => {
    const last = i === layers.length - 1;
    g.nodes.push({ op: "MatMul", inputs: [cur, `w${i}`], outputs: [`mm${i}`] });
    g.nodes.push({ op: "Add", inputs: [`mm${i}`, `b${i}`], outputs: [last ? "y" : `pre${i}`] });
    if (!last) g.nodes.push({ op: "Relu", inputs: [`pre${i}`], outputs: [`h${i}`] });
    cur = `h${i}`;
  });
  return {
    bytes: encodeModel(g),
    inputDims: [1, sizes[0]],
    outputDims: [1, sizes.at(-1)!],
    reference(x) {
      let v = Array.from(x);
      layers.forEach((l, li) => {
        const next = new Array<number>(l.out).fill(0);
        for (let o = 0; o < l.out; o++) {
          let s = l.b[o];
          for (let i = 0; i < l.inp; i++) s += v[i] * l.w[i * l.out + o];
          next[o] = li < layers.length - 1 ? Math.max(0, s) : s;
        }
        v = next;
      });
      return Float32Array.from(v);
    },
  };
}

/** Options of {@link conv1d}. */
export interface Conv1dOptions {
  channels: number;
  filters: number;
  kernel: number;
  length: number;
  /** @default 1 */
  stride?: number;
  /** Zero padding on each side. @default 0 */
  pad?: number;
  /** @default 7 */
  seed?: number;
}

/** A Conv1D layer (`Conv` on [1, C, L] with bias) followed by ReLU. */
export function conv1d(o: Conv1dOptions): ReferenceModel {
  const { channels: c, filters: m, kernel: k, length: l, stride = 1, pad = 0, seed = 7 } = o;
  const rnd = prng(seed);
  const w = randomArray(m * c * k, rnd, 1 / Math.sqrt(c * k));
  const b = randomArray(m, rnd, 0.1);
  const lout = Math.floor((l + 2 * pad - k) / stride) + 1;
  const g: Graph = {
    inputs: [{ name: "signal", dims: [1, c, l] }],
    outputs: [{ name: "features", dims: [1, m, lout] }],
    initializers: [
      { name: "w", dims: [m, c, k], data: w },
      { name: "b", dims: [m], data: b },
    ],
    nodes: [
      {
        op: "Conv",
        inputs: ["signal", "w", "b"],
        outputs: ["conv"],
        attributes: { kernel_shape: [k], strides: [stride], pads: [pad, pad] },
      },
      { op: "Relu", inputs: ["conv"], outputs: ["features"] },
    ],
  };
  return {
    bytes: encodeModel(g),
    inputDims: [1, c, l],
    outputDims: [1, m, lout],
    reference(x) {
      const y = new Float32Array(m * lout);
      for (let f = 0; f < m; f++) {
        for (let t = 0; t < lout; t++) {
          let s = b[f];
          for (let ch = 0; ch < c; ch++) {
            for (let j = 0; j < k; j++) {
              const pos = t * stride + j - pad;
              if (pos >= 0 && pos < l) s += x[ch * l + pos] * w[(f * c + ch) * k + j];
            }
          }
          y[f * lout + t] = Math.max(0, s);
        }
      }
      return y;
    },
  };
}

/**
 * The example module's model: a window of `n` readings ([1, n]) → its
 * roughness, the root mean square of consecutive differences ([1, 1]). A
 * fixed feature extractor written as an ONNX graph (MatMul with a
 * first-difference matrix, Mul, ReduceMean, Sqrt), not a trained network.
 * `scale` multiplies the score (another version of the model, same interface).
 */
export function windowScorer(n = 16, scale = 1): ReferenceModel {
  const d = new Float32Array(n * (n - 1));
  for (let j = 0; j < n - 1; j++) {
    d[j * (n - 1) + j] = -scale; // row j, column j
    d[(j + 1) * (n - 1) + j] = scale; // row j+1, column j
  }
  const g: Graph = {
    inputs: [{ name: "window", dims: [1, n] }],
    outputs: [{ name: "score", dims: [1, 1] }],
    initializers: [{ name: "diff", dims: [n, n - 1], data: d }],
    nodes: [
      { op: "MatMul", inputs: ["window", "diff"], outputs: ["d"] },
      { op: "Mul", inputs: ["d", "d"], outputs: ["sq"] },
      { op: "ReduceMean", inputs: ["sq"], outputs: ["ms"], attributes: { axes: [1], keepdims: 1 } },
      { op: "Sqrt", inputs: ["ms"], outputs: ["score"] },
    ],
  };
  return {
    bytes: encodeModel(g),
    inputDims: [1, n],
    outputDims: [1, 1],
    reference(x) {
      let s = 0;
      for (let i = 1; i < n; i++) s += (x[i] - x[i - 1]) ** 2;
      return Float32Array.of(scale * Math.sqrt(s / (n - 1)));
    },
  };
}
