/**
 * A minimal ONNX writer: encodes a `ModelProto` (onnx/onnx.proto3, IR
 * version 8) as protobuf wire format, so tests, the bench and the example
 * build generate their models from source instead of committing opaque blobs.
 * It covers what those models use: float32 initializers, named inputs and
 * outputs with static or symbolic dimensions, nodes with int, ints, float and
 * string attributes.
 *
 * @example
 * ```ts
 * import { encodeModel } from "./onnx_writer.ts";
 * const bytes = encodeModel({
 *   inputs: [{ name: "x", dims: [1, 4] }],
 *   outputs: [{ name: "y", dims: [1, 4] }],
 *   initializers: [],
 *   nodes: [{ op: "Relu", inputs: ["x"], outputs: ["y"] }],
 * });
 * console.log(bytes.length > 0); // true
 * ```
 *
 * @module
 */

import { concatBytes } from "../../lib/mod.ts";

/** ONNX `TensorProto.DataType` values used here. */
export const DataType = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7, DOUBLE: 11 } as const;

/** A graph input or output: name, element type and dims (a string is a symbolic dim). */
export interface ValueInfo {
  name: string;
  /** @default DataType.FLOAT */
  type?: number;
  dims: (number | string)[];
}

/** A constant tensor of the graph (weights). */
export interface Initializer {
  name: string;
  dims: number[];
  /** float32 values, or int64 values as bigint. */
  data: Float32Array | BigInt64Array;
}

/** An attribute value: int, float, ints or string. */
export type Attribute = number | number[] | string | { float: number };

/** One node (operator call). */
export interface Node {
  op: string;
  inputs: string[];
  outputs: string[];
  attributes?: Record<string, Attribute>;
}

/** A whole model. */
export interface Graph {
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  initializers: Initializer[];
  nodes: Node[];
  /** Default opset 17. */
  opset?: number;
}

class Writer {
  #chunks: Uint8Array[] = [];
  #small: number[] = [];
  #flush(): void {
    if (this.#small.length === 0) return;
    this.#chunks.push(Uint8Array.from(this.#small));
    this.#small = [];
  }
  varint(v: number | bigint): this {
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.#small.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.#small.push(Number(x));
    return this;
  }
  /** Field key: field number and wire type (Protocol Buffers encoding, "Message structure"). */
  key(field: number, wire: number): this {
    return this.varint((field << 3) | wire);
  }
  int(field: number, v: number | bigint): this {
    return this.key(field, 0).varint(v);
  }
  bytes(field: number, b: Uint8Array): this {
    this.key(field, 2).varint(b.length);
    this.#flush();
    this.#chunks.push(b);
    return this;
  }
  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  message(field: number, w: Writer): this {
    return this.bytes(field, w.done());
  }
  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.#small.push(...b);
    return this;
  }
  done(): Uint8Array {
    this.#flush();
    return concatBytes(this.#chunks);
  }
}

// Field numbers from onnx.proto3.
function valueInfo(v: ValueInfo): Writer {
  const shape = new Writer();
  for (const d of v.dims) {
    const dim = new Writer();
    if (typeof d === "number") dim.int(1, d); // dim_value
    else dim.string(2, d); // dim_param
    shape.message(1, dim);
  }
  const tensorType = new Writer().int(1, v.type ?? DataType.FLOAT).message(2, shape);
  const type = new Writer().message(1, tensorType); // TypeProto.tensor_type
  return new Writer().string(1, v.name).message(2, type);
}

function tensor(t: Initializer): Writer {
  const w = new Writer();
  for (const d of t.dims) w.int(1, d);
  const isInt = t.data instanceof BigInt64Array;
  w.int(2, isInt ? DataType.INT64 : DataType.FLOAT);
  w.string(8, t.name);
  // raw_data: little-endian, as the ONNX spec requires.
  const raw = new Uint8Array(t.data.byteLength);
  const dv = new DataView(raw.buffer);
  t.data.forEach((x: number | bigint, i: number) => {
    if (isInt) dv.setBigInt64(i * 8, x as bigint, true);
    else dv.setFloat32(i * 4, x as number, true);
  });
  w.bytes(9, raw);
  return w;
}

function attribute(name: string, a: Attribute): Writer {
  const w = new Writer().string(1, name);
  // AttributeProto.AttributeType: FLOAT 1, INT 2, STRING 3, INTS 7.
  if (typeof a === "number") w.int(3, a).int(20, 2);
  else if (typeof a === "string") w.string(4, a).int(20, 3);
  else if (Array.isArray(a)) {
    for (const x of a) w.int(8, x);
    w.int(20, 7);
  } else w.float(2, a.float).int(20, 1);
  return w;
}

function node(n: Node, i: number): Writer {
  const w = new Writer();
  for (const x of n.inputs) w.string(1, x);
  for (const x of n.outputs) w.string(2, x);
  w.string(3, `${n.op.toLowerCase()}_${i}`).string(4, n.op);
  for (const [k, v] of Object.entries(n.attributes ?? {})) w.message(5, attribute(k, v));
  return w;
}

/** Encodes `g` as an ONNX model file. */
export function encodeModel(g: Graph): Uint8Array {
  const graph = new Writer();
  g.nodes.forEach((n, i) => graph.message(1, node(n, i)));
  graph.string(2, "edged_generated");
  for (const t of g.initializers) graph.message(5, tensor(t));
  for (const v of g.inputs) graph.message(11, valueInfo(v));
  for (const v of g.outputs) graph.message(12, valueInfo(v));
  const opset = new Writer().string(1, "").int(2, g.opset ?? 17);
  return new Writer()
    .int(1, 8) // ir_version
    .string(2, "edged") // producer_name
    .message(7, graph)
    .message(8, opset)
    .done();
}
