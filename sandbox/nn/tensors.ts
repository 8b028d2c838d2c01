/**
 * Tensor checks shared by the guest side (`set_input`, before anything
 * crosses to the engine) and the engine (against the model version it
 * actually runs).
 *
 * @module
 */

import { ELEMENT_BYTES, type ElementType, NnErrno, type NnErrnoValue } from "./abi.ts";
import type { TensorSpec } from "./channel.ts";

/** Most dimensions a tensor may have. */
export const MAX_RANK = 8;

/** A model input or output as onnxruntime describes it. */
export interface ValueMetadata {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: readonly (number | string)[];
}

/** The recorded form of an input or output: symbolic or unknown dimensions become -1. */
export function specOf(m: ValueMetadata): TensorSpec {
  return {
    name: m.name,
    type: m.isTensor ? (m.type ?? "unknown") : "non-tensor",
    dims: (m.shape ?? []).map((d) => (typeof d === "number" && d >= 0 ? d : -1)),
  };
}

/** Plain numbers from onnxruntime's dims. */
export function dimsOf(dims: readonly number[]): number[] {
  return dims.map(Number);
}

/** Whether onnxruntime's element type `t` can be exchanged with a guest. */
export function isElementType(t: string): t is ElementType {
  return Object.hasOwn(ELEMENT_BYTES, t);
}

/**
 * Why a tensor of `type` and `dims` with `length` data bytes does not fit
 * `spec` under `maxElements`, or null when it does.
 */
export function checkTensor(
  spec: TensorSpec,
  type: string,
  dims: readonly number[],
  length: number,
  maxElements: number,
): { status: NnErrnoValue; message: string } | null {
  if (!isElementType(spec.type)) {
    return {
      status: NnErrno.UNSUPPORTED_OPERATION,
      message: `the model's ${spec.type} tensors are not supported`,
    };
  }
  if (type !== spec.type) {
    return {
      status: NnErrno.INVALID_ARGUMENT,
      message: `type ${type}, the model takes ${spec.type}`,
    };
  }
  if (dims.length !== spec.dims.length) {
    return {
      status: NnErrno.INVALID_ARGUMENT,
      message: `rank ${dims.length} [${dims}], the model takes rank ${spec.dims.length} [${
        spec.dims.map((d) => (d < 0 ? "?" : d))
      }]`,
    };
  }
  let elements = 1;
  for (let i = 0; i < dims.length; i++) {
    const d = dims[i];
    if (!Number.isInteger(d) || d < 0) {
      return { status: NnErrno.INVALID_ARGUMENT, message: `dimension ${i} is ${d}` };
    }
    if (spec.dims[i] >= 0 && d !== spec.dims[i]) {
      return {
        status: NnErrno.INVALID_ARGUMENT,
        message: `dimension ${i} is ${d}, the model takes ${spec.dims[i]}`,
      };
    }
    elements *= d;
  }
  if (elements > maxElements) {
    return {
      status: NnErrno.TOO_LARGE,
      message: `${elements} elements, the model's limit is ${maxElements}`,
    };
  }
  const want = elements * ELEMENT_BYTES[type as ElementType];
  if (length !== want) {
    return {
      status: NnErrno.INVALID_ARGUMENT,
      message: `${length} data bytes, [${dims}] of ${type} needs ${want}`,
    };
  }
  return null;
}
