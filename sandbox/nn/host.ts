/**
 * The `wasi_ephemeral_nn` functions a guest imports (see `abi.ts`), built
 * per instance in its sandbox Worker. Graphs are models named in the
 * manifest's `grants.nn` and installed by the operator; `load` (bytes from
 * the guest) answers `unsupported_operation`. Tensors are checked against
 * the model and its element limit before they cross to the engine;
 * `compute` waits at most `nn.deadline_ms` and is charged fuel for the
 * engine's time. Every refusal is also logged with its reason.
 *
 * @module
 */

import { ModuleFault } from "../errors.ts";
import type { ModuleContext } from "../host/context.ts";
import {
  ELEMENT_BYTES,
  type ElementType,
  elementTypeOf,
  NnErrno,
  type NnErrnoValue,
  TENSOR_RECORD,
} from "./abi.ts";
import {
  blobOffsets,
  type ComputeCost,
  type ModelInfo,
  tensorBytes,
  type WireTensor,
} from "./channel.ts";
import type { NnLink } from "./link.ts";
import { checkTensor, MAX_RANK } from "./tensors.ts";

/** Graphs one instance may load. */
export const MAX_GRAPHS = 16;
/** Execution contexts one instance holds; the oldest handle is reused past this. */
export const MAX_CONTEXTS = 32;
/** Fuel every `compute` costs on top of the engine's time (the round trip to the engine). */
export const COMPUTE_BASE_FUEL = 1000;

interface Graph {
  model: string;
  sha256: string;
  info: ModelInfo;
  maxElements: number;
  cost: ComputeCost | null;
  /** Engine milliseconds of the last compute (the estimate when the model has no cost). */
  lastMs: number;
}

interface Tensor {
  type: ElementType;
  dims: number[];
  bytes: Uint8Array;
}

interface Context {
  graph: Graph;
  inputs: (Tensor | undefined)[];
  outputs: Tensor[] | undefined;
}

/** An instance's WASI-NN imports, and the hook that gives them the instance's fuel. */
export interface NnGuest {
  imports: Record<string, (...args: never[]) => unknown>;
  /** Called once instantiated, with the fuel accessors of a metered module. */
  bindFuel(get?: () => number, set?: (fuel: number) => void): void;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Builds the imports for an instance (`inst`) whose context is `ctx`;
 * without a link (no engine configured) every call answers `runtime_error`.
 */
export function nnGuest(ctx: ModuleContext, link: NnLink | undefined, inst: number): NnGuest {
  const granted = new Set(ctx.manifest.grants.nn ?? []);
  const graphs: Graph[] = [];
  const contexts: Context[] = [];
  let nextContext = 0;
  let getFuel: (() => number) | undefined;
  let setFuel: ((fuel: number) => void) | undefined;

  const refuse = (fn: string, status: NnErrnoValue, why: string): NnErrnoValue => {
    ctx.log(2, `[edged] wasi-nn ${fn}: ${why}`);
    return status;
  };
  const view = () => new DataView(ctx.memory!.buffer);
  /** Writes a u32 result; false when the pointer is out of bounds. */
  const out32 = (ptr: number, v: number): boolean => {
    if (!ctx.bytes(ptr, 4)) return false;
    view().setUint32(ptr >>> 0, v >>> 0, true);
    return true;
  };
  const charge = (fuel: number, what: string): void => {
    if (!getFuel || !setFuel) return;
    const left = getFuel() - fuel;
    setFuel(left);
    if (left < 0) {
      throw new ModuleFault(
        "fuel",
        `fuel exhausted: ${what} used more than limits.fuel_per_message (${ctx.manifest.limits.fuel_per_message})`,
      );
    }
  };

  const imports: NnGuest["imports"] = {
    load: (): number =>
      refuse(
        "load",
        NnErrno.UNSUPPORTED_OPERATION,
        "models are installed by the operator, not sent by modules: use load_by_name with a model in grants.nn",
      ),

    load_by_name: (namePtr: number, nameLen: number, graphOut: number): number => {
      const nb = ctx.bytes(namePtr, nameLen);
      if (!nb || !ctx.bytes(graphOut, 4)) {
        return refuse("load_by_name", NnErrno.INVALID_ARGUMENT, "pointer out of bounds");
      }
      let name: string;
      try {
        name = utf8.decode(nb);
      } catch {
        return refuse("load_by_name", NnErrno.INVALID_ARGUMENT, "the name is not UTF-8");
      }
      if (!granted.has(name)) {
        return refuse(
          "load_by_name",
          NnErrno.NOT_FOUND,
          `model "${name}" is not granted (grants.nn: ${JSON.stringify([...granted])})`,
        );
      }
      // The same model again (a guest that loads per message) gets its handle back, refreshed.
      const again = graphs.findIndex((g) => g.model === name);
      if (again < 0 && graphs.length >= MAX_GRAPHS) {
        return refuse(
          "load_by_name",
          NnErrno.TOO_LARGE,
          `at most ${MAX_GRAPHS} graphs per instance`,
        );
      }
      if (!link) return refuse("load_by_name", NnErrno.RUNTIME_ERROR, "no inference engine here");
      const r = link.request({ op: "load", inst, model: name });
      if (r.answer.op !== "load") {
        const why = r.answer.op === "error" ? r.answer.message : "unexpected answer";
        return refuse("load_by_name", r.status || NnErrno.RUNTIME_ERROR, why);
      }
      const { sha256, info, maxElements, cost } = r.answer;
      const lastMs = graphs[again]?.lastMs ?? 0;
      const g = { model: name, sha256, info, maxElements, cost, lastMs };
      if (again >= 0) graphs[again] = g;
      else graphs.push(g);
      out32(graphOut, again >= 0 ? again : graphs.length - 1);
      return NnErrno.SUCCESS;
    },

    init_execution_context: (graph: number, ctxOut: number): number => {
      const g = graphs[graph];
      if (!g) {
        return refuse("init_execution_context", NnErrno.INVALID_ARGUMENT, `no graph ${graph}`);
      }
      if (!ctx.bytes(ctxOut, 4)) {
        return refuse("init_execution_context", NnErrno.INVALID_ARGUMENT, "pointer out of bounds");
      }
      // Bounded: past MAX_CONTEXTS the oldest context's handle is reused (it becomes the new
      // one), so a guest that creates a context per message does not grow without bound.
      const handle = nextContext++ % MAX_CONTEXTS;
      if (nextContext > MAX_CONTEXTS && nextContext % MAX_CONTEXTS === 1) {
        ctx.log(
          1,
          `[edged] wasi-nn: more than ${MAX_CONTEXTS} execution contexts; reusing the oldest handles`,
        );
      }
      contexts[handle] = { graph: g, inputs: [], outputs: undefined };
      out32(ctxOut, handle);
      return NnErrno.SUCCESS;
    },

    set_input: (c: number, index: number, tensorPtr: number): number => {
      const ec = contexts[c];
      if (!ec) return refuse("set_input", NnErrno.INVALID_ARGUMENT, `no execution context ${c}`);
      const spec = ec.graph.info.inputs[index >>> 0];
      if (!spec) {
        return refuse(
          "set_input",
          NnErrno.INVALID_ARGUMENT,
          `input ${
            index >>> 0
          }: model "${ec.graph.model}" has ${ec.graph.info.inputs.length} input(s)`,
        );
      }
      const rec = ctx.bytes(tensorPtr, TENSOR_RECORD.size);
      if (!rec) {
        return refuse("set_input", NnErrno.INVALID_ARGUMENT, "tensor pointer out of bounds");
      }
      const v = new DataView(rec.buffer, rec.byteOffset, TENSOR_RECORD.size);
      const rank = v.getUint32(TENSOR_RECORD.dimsLen, true);
      const witxType = v.getUint8(TENSOR_RECORD.type);
      const type = elementTypeOf(witxType);
      if (!type) {
        return refuse(
          "set_input",
          NnErrno.UNSUPPORTED_OPERATION,
          `tensor type ${witxType} (f16 or unknown)`,
        );
      }
      if (rank > MAX_RANK) {
        return refuse("set_input", NnErrno.INVALID_ARGUMENT, `rank ${rank}, at most ${MAX_RANK}`);
      }
      const dimBytes = ctx.bytes(v.getUint32(TENSOR_RECORD.dimsPtr, true), rank * 4);
      const data = ctx.bytes(
        v.getUint32(TENSOR_RECORD.dataPtr, true),
        v.getUint32(TENSOR_RECORD.dataLen, true),
      );
      if (!dimBytes || !data) {
        return refuse("set_input", NnErrno.INVALID_ARGUMENT, "dimensions or data out of bounds");
      }
      const dv = new DataView(dimBytes.buffer, dimBytes.byteOffset, dimBytes.length);
      const dims = Array.from({ length: rank }, (_, i) => dv.getUint32(i * 4, true));
      const problem = checkTensor(spec, type, dims, data.length, ec.graph.maxElements);
      if (problem) {
        return refuse(
          "set_input",
          problem.status,
          `input ${index >>> 0} (${spec.name}): ${problem.message}`,
        );
      }
      charge(data.length >>> 3, "set_input");
      ec.inputs[index >>> 0] = { type, dims, bytes: data.slice() };
      ec.outputs = undefined;
      return NnErrno.SUCCESS;
    },

    compute: (c: number): number => {
      const ec = contexts[c];
      if (!ec) return refuse("compute", NnErrno.INVALID_ARGUMENT, `no execution context ${c}`);
      const g = ec.graph;
      const missing = g.info.inputs.findIndex((_, i) => !ec.inputs[i]);
      if (missing >= 0) {
        return refuse("compute", NnErrno.INVALID_ARGUMENT, `input ${missing} is not set`);
      }
      if (!link) return refuse("compute", NnErrno.RUNTIME_ERROR, "no inference engine here");
      const ins = ec.inputs as Tensor[];
      // The charge: the model's measured work scaled by the input elements (see ComputeCost),
      // known before the call, so a call the fuel left cannot pay for is not started.
      const elements = ins.reduce((n, t) => n + t.bytes.length / ELEMENT_BYTES[t.type], 0);
      const estimate = g.cost ? g.cost.ms * (elements / g.cost.elements) : g.lastMs;
      const fuel = COMPUTE_BASE_FUEL + Math.ceil(estimate * link.fuelPerMs);
      if (getFuel && getFuel() < fuel) charge(fuel, `compute of "${g.model}"`);
      const blobs = ins.map((t) => t.bytes);
      const offsets = blobOffsets(blobs);
      const wire: WireTensor[] = ins.map((t, i) => ({
        type: t.type,
        dims: t.dims,
        offset: offsets[i],
        length: t.bytes.length,
      }));
      const deadline = Date.now() + link.deadlineMs;
      const r = link.request(
        { op: "compute", inst, model: g.model, deadline, inputs: wire },
        blobs,
      );
      const timedOut = r.status === NnErrno.RUNTIME_ERROR && r.waitedMs >= link.deadlineMs;
      const engineMs = r.answer.op === "compute" ? r.answer.ms : 0;
      // A timed-out call held the guest's Worker until the deadline: that is what is charged.
      // Without a measured cost, the engine's time is.
      const charged = timedOut
        ? Math.max(fuel, COMPUTE_BASE_FUEL + Math.ceil(r.waitedMs * link.fuelPerMs))
        : r.answer.op !== "compute"
        ? COMPUTE_BASE_FUEL
        : g.cost
        ? fuel
        : COMPUTE_BASE_FUEL + Math.ceil(engineMs * link.fuelPerMs);
      charge(charged, `compute of "${g.model}"`);
      if (r.answer.op !== "compute") {
        const why = r.answer.op === "error" ? r.answer.message : "unexpected answer";
        return refuse("compute", r.status || NnErrno.RUNTIME_ERROR, why);
      }
      g.lastMs = r.answer.ms;
      if (r.answer.sha256 !== g.sha256) {
        // The operator installed a new version since load_by_name: outputs are the new one's.
        g.sha256 = r.answer.sha256;
      }
      const outputs: Tensor[] = [];
      for (const o of r.answer.outputs) {
        const bytes = tensorBytes(r.blobs, o);
        if (!bytes) return refuse("compute", NnErrno.RUNTIME_ERROR, "engine answer out of range");
        outputs.push({ type: o.type, dims: o.dims, bytes: bytes.slice() });
      }
      ec.outputs = outputs;
      return NnErrno.SUCCESS;
    },

    get_output: (c: number, index: number, outPtr: number, outMax: number, written: number) => {
      const ec = contexts[c];
      if (!ec) return refuse("get_output", NnErrno.INVALID_ARGUMENT, `no execution context ${c}`);
      if (!ec.outputs) {
        return refuse(
          "get_output",
          NnErrno.INVALID_ARGUMENT,
          "compute has not run since the inputs changed",
        );
      }
      const t = ec.outputs[index >>> 0];
      if (!t) {
        return refuse(
          "get_output",
          NnErrno.INVALID_ARGUMENT,
          `output ${index >>> 0}: the model has ${ec.outputs.length} output(s)`,
        );
      }
      const dest = ctx.bytes(outPtr, outMax);
      if (!dest || !ctx.bytes(written, 4)) {
        return refuse("get_output", NnErrno.INVALID_ARGUMENT, "buffer out of bounds");
      }
      if (t.bytes.length > dest.length) {
        return refuse(
          "get_output",
          NnErrno.TOO_LARGE,
          `output ${
            index >>> 0
          } is ${t.bytes.length} bytes ([${t.dims}] ${t.type}), the buffer ${dest.length}`,
        );
      }
      charge(t.bytes.length >>> 3, "get_output");
      dest.set(t.bytes);
      out32(written, t.bytes.length);
      return NnErrno.SUCCESS;
    },
  };

  return {
    imports,
    bindFuel(get, set) {
      getFuel = get;
      setFuel = set;
    },
  };
}
