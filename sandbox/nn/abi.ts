/**
 * WASI-NN preview 1 as Wasmtime and WasmEdge implement it: import module
 * `wasi_ephemeral_nn`, the witx of WebAssembly/wasi-nn (`wasi-nn.witx`, the
 * `load_by_name` revision) lowered to core wasm. Every function returns an
 * `nn_errno` (u16 enum, passed as i32) and writes its result through a
 * pointer.
 *
 * @module
 */

import type { FuncType } from "../wasm/parse.ts";

/** The import module name. */
export const NN_MODULE = "wasi_ephemeral_nn";

const i32 = "i32" as const;
const fn = (n: number): FuncType => ({ params: new Array(n).fill(i32), results: [i32] });

/**
 * Core-wasm types of the witx functions: `load(builder_ptr, builder_len,
 * encoding, target, graph_out)`, `load_by_name(name_ptr, name_len,
 * graph_out)`, `init_execution_context(graph, ctx_out)`, `set_input(ctx,
 * index, tensor_ptr)`, `compute(ctx)`, `get_output(ctx, index, out_ptr,
 * out_max, written_out)`.
 */
export const NN_SIGNATURES: Record<string, FuncType> = {
  load: fn(5),
  load_by_name: fn(3),
  init_execution_context: fn(2),
  set_input: fn(3),
  compute: fn(1),
  get_output: fn(5),
};

/** `nn_errno` (witx enum, in order). */
export const NnErrno = {
  SUCCESS: 0,
  INVALID_ARGUMENT: 1,
  INVALID_ENCODING: 2,
  MISSING_MEMORY: 3,
  BUSY: 4,
  RUNTIME_ERROR: 5,
  UNSUPPORTED_OPERATION: 6,
  TOO_LARGE: 7,
  NOT_FOUND: 8,
} as const;

/** A value of {@link NnErrno}. */
export type NnErrnoValue = (typeof NnErrno)[keyof typeof NnErrno];

/** `tensor_type` (witx enum, in order); f16 is not supported here. */
export const TensorType = { F16: 0, F32: 1, F64: 2, U8: 3, I32: 4, I64: 5 } as const;

/** Element types edged exchanges, by name (the names onnxruntime uses). */
export type ElementType = "float32" | "float64" | "uint8" | "int32" | "int64";

/** Bytes per element. */
export const ELEMENT_BYTES: Record<ElementType, number> = {
  float32: 4,
  float64: 8,
  uint8: 1,
  int32: 4,
  int64: 8,
};

/** witx `tensor_type` → element type (undefined: unsupported, f16 or unknown). */
export function elementTypeOf(witx: number): ElementType | undefined {
  switch (witx) {
    case TensorType.F32:
      return "float32";
    case TensorType.F64:
      return "float64";
    case TensorType.U8:
      return "uint8";
    case TensorType.I32:
      return "int32";
    case TensorType.I64:
      return "int64";
    default:
      return undefined;
  }
}

/**
 * Layout of the witx `tensor` record in guest memory (32-bit, natural
 * alignment): `dimensions` (list u32: pointer @0, length @4), `type` (u8 @8),
 * `data` (list u8: pointer @12, length @16); 20 bytes.
 */
export const TENSOR_RECORD = {
  dimsPtr: 0,
  dimsLen: 4,
  type: 8,
  dataPtr: 12,
  dataLen: 16,
  size: 20,
};

/** `graph_encoding` value of ONNX (witx enum: openvino, onnx, …). */
export const ENCODING_ONNX = 1;
