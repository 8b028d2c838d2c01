/// <reference lib="deno.worker" />
/**
 * The inference engine's Worker: onnxruntime-web's single-threaded wasm
 * backend, started with `deno.permissions: "none"`. It receives the engine
 * files' contents and the models' bytes from the runtime's thread (it can
 * read nothing itself), holds one session per model in use, and answers the
 * sandbox Workers' `load_by_name` and `compute` requests through their
 * shared buffers (`channel.ts`). Every engine operation runs in one queue, so
 * a model replaced by the operator changes between two computations, never
 * during one.
 *
 * @module
 */

import { NnErrno, type NnErrnoValue } from "./abi.ts";
import {
  type ChannelAnswer,
  type ChannelRequest,
  type ComputeCost,
  type ModelInfo,
  readMessage,
  REQ_LEN,
  REQ_SEQ,
  RESP_LEN,
  RESP_SEQ,
  RESP_STATUS,
  tensorBytes,
  type WireTensor,
  writeMessage,
} from "./channel.ts";
import { checkTensor, dimsOf, isElementType, specOf } from "./tensors.ts";
import type { EngineReply, EngineRequest } from "./engine_protocol.ts";

/** The part of onnxruntime-web's API used here. */
interface OrtTensor {
  type: string;
  dims: readonly number[];
  data: ArrayBufferView & { length: number };
}
interface OrtValueMetadata {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: readonly (number | string)[];
}
interface OrtSession {
  inputNames: readonly string[];
  outputNames: readonly string[];
  inputMetadata: readonly OrtValueMetadata[];
  outputMetadata: readonly OrtValueMetadata[];
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
interface Ort {
  env: { wasm: Record<string, unknown>; logLevel?: string };
  Tensor: new (type: string, data: ArrayBufferView, dims: readonly number[]) => OrtTensor;
  InferenceSession: {
    create(model: Uint8Array, options?: Record<string, unknown>): Promise<OrtSession>;
  };
}

interface Model {
  sha256: string;
  session: OrtSession;
  info: ModelInfo;
  maxElements: number;
  cost: ComputeCost | null;
}

let ort: Ort | undefined;
/** The engine's wasm memory (captured when onnxruntime creates it). */
let heap: WebAssembly.Memory | undefined;
const models = new Map<string, Model>();
/** Instance id → its lane and the models its manifest grants (set by the runtime's thread). */
const grants = new Map<number, { lane: number; models: Set<string> }>();
const lanes = new Map<number, { sab: SharedArrayBuffer; stopped: boolean }>();
let queue: Promise<unknown> = Promise.resolve();

/** Runs `fn` after every engine operation queued before it. */
function serial<T>(fn: () => Promise<T>): Promise<T> {
  const next = queue.then(fn, fn);
  queue = next.catch(() => {});
  return next;
}

function post(msg: EngineReply): void {
  self.postMessage(msg);
}

/**
 * Loads onnxruntime-web from its bundle's source. Inside a Worker whose
 * script is a file, `location.origin` is "null" and the bundle's
 * `new URL(import.meta.url, location.origin)` throws, so `location` is hidden
 * first. The wasm memory's maximum, 4 GiB in the bundle, is capped by
 * creating shared memories through a wrapper of `WebAssembly.Memory`.
 */
async function init(src: string, wasm: Uint8Array, memoryBytes: number): Promise<void> {
  Object.defineProperty(globalThis, "location", { value: undefined, configurable: true });
  const pages = Math.floor(memoryBytes / 65536);
  const Native = WebAssembly.Memory;
  const Capped = function (desc: WebAssembly.MemoryDescriptor) {
    if (!desc.shared) return new Native(desc);
    const initial = Math.min(desc.initial, pages);
    const m = new Native({ ...desc, initial, maximum: Math.min(desc.maximum ?? pages, pages) });
    heap = m;
    return m;
  } as unknown as typeof WebAssembly.Memory;
  Capped.prototype = Native.prototype;
  (WebAssembly as { Memory: typeof WebAssembly.Memory }).Memory = Capped;
  const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
  try {
    ort = (await import(url)) as Ort;
  } finally {
    URL.revokeObjectURL(url);
  }
  ort.env.wasm.numThreads = 1; // no pthread Workers: this Worker may not start any
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmBinary = wasm;
  ort.env.logLevel = "error";
}

async function createSession(bytes: Uint8Array): Promise<{ session: OrtSession; info: ModelInfo }> {
  if (!ort) throw new Error("the engine is not initialised");
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
  const info: ModelInfo = {
    inputs: session.inputMetadata.map(specOf),
    outputs: session.outputMetadata.map(specOf),
  };
  return { session, info };
}

/** Inputs of more elements than this are not measured (the cost is then the engine's time). */
const MEASURE_MAX_ELEMENTS = 1 << 22;

/**
 * The model's {@link ComputeCost}: the fastest of 5 runs (after one to warm
 * up) on zero inputs with open dimensions set to 1; null when the model
 * cannot run on such inputs.
 */
async function measure(session: OrtSession, info: ModelInfo): Promise<ComputeCost | null> {
  const feeds: Record<string, OrtTensor> = {};
  let elements = 0;
  for (const spec of info.inputs) {
    if (!isElementType(spec.type)) return null;
    const dims = spec.dims.map((d) => (d < 0 ? 1 : d));
    const n = dims.reduce((a, b) => a * b, 1);
    elements += n;
    if (elements > MEASURE_MAX_ELEMENTS) return null;
    feeds[spec.name] = new ort!.Tensor(spec.type, new ARRAYS[spec.type](n), dims);
  }
  try {
    await session.run(feeds);
    let best = Infinity;
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await session.run(feeds);
      best = Math.min(best, performance.now() - t0);
    }
    return { ms: best, elements: Math.max(1, elements) };
  } catch (err) {
    if (isFatal(err)) throw err;
    return null;
  }
}

/** True when `err` means the engine's wasm instance is no longer usable. */
function isFatal(err: unknown): boolean {
  return err instanceof WebAssembly.RuntimeError || /\bAborted\b/.test(String(err));
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function control(msg: EngineRequest): Promise<void> {
  switch (msg.t) {
    case "init":
      await init(msg.src, msg.wasm, msg.memoryBytes);
      post({ t: "ok", req: msg.req });
      return;
    case "validate": {
      const { session, info } = await createSession(msg.bytes);
      try {
        post({ t: "info", req: msg.req, info, cost: await measure(session, info) });
      } finally {
        await session.release();
      }
      return;
    }
    case "put": {
      const { session, info } = await createSession(msg.bytes);
      const old = models.get(msg.name);
      const { sha256, maxElements, cost } = msg;
      models.set(msg.name, { sha256, session, info, maxElements, cost });
      await old?.session.release();
      post({ t: "info", req: msg.req, info, cost });
      return;
    }
    case "drop": {
      const old = models.get(msg.name);
      models.delete(msg.name);
      await old?.session.release();
      post({ t: "ok", req: msg.req });
      return;
    }
    case "grant":
      grants.set(msg.inst, { lane: msg.lane, models: new Set(msg.models) });
      post({ t: "ok", req: msg.req });
      return;
    case "revoke":
      grants.delete(msg.inst);
      post({ t: "ok", req: msg.req });
      return;
    case "attach":
      attach(msg.lane, msg.sab);
      post({ t: "ok", req: msg.req });
      return;
    case "detach": {
      const l = lanes.get(msg.lane);
      if (l) l.stopped = true;
      lanes.delete(msg.lane);
      post({ t: "ok", req: msg.req });
      return;
    }
    case "stats": {
      // With --expose-gc (the soak runs with it) the JS heap is measured after a collection.
      (globalThis as { gc?: () => void }).gc?.();
      post({
        t: "stats",
        req: msg.req,
        heapBytes: heap?.buffer.byteLength ?? 0,
        jsHeapBytes: Deno.memoryUsage().heapUsed,
        models: [...models.keys()],
      });
      return;
    }
  }
}

/** Serves one sandbox Worker's buffer until it is detached. */
function attach(lane: number, sab: SharedArrayBuffer): void {
  const prev = lanes.get(lane);
  if (prev) prev.stopped = true;
  const l = { sab, stopped: false };
  lanes.set(lane, l);
  const ctrl = new Int32Array(sab, 0, 8);
  // From the last answered request: one still unanswered (its engine died) is served now.
  let seen = Atomics.load(ctrl, RESP_SEQ);
  const wait = (): void => {
    if (l.stopped) return;
    const w = Atomics.waitAsync(ctrl, REQ_SEQ, seen);
    const woke = w.async ? w.value : Promise.resolve(w.value);
    woke.then(() => {
      if (l.stopped) return;
      const seq = Atomics.load(ctrl, REQ_SEQ);
      if (seq === seen) return wait();
      seen = seq;
      serial(() => answer(lane, sab, ctrl, seq)).finally(wait);
    });
  };
  wait();
}

async function answer(lane: number, sab: SharedArrayBuffer, ctrl: Int32Array, seq: number) {
  let status: NnErrnoValue = NnErrno.SUCCESS;
  let reply: ChannelAnswer;
  let blobs: Uint8Array[] = [];
  let fatal: string | undefined;
  try {
    const { header, blobs: area } = readMessage<ChannelRequest>(sab, Atomics.load(ctrl, REQ_LEN));
    const out = await handle(lane, header, area);
    status = out.status;
    reply = out.reply;
    blobs = out.blobs;
  } catch (err) {
    status = NnErrno.RUNTIME_ERROR;
    reply = { op: "error", message: `engine: ${message(err)}` };
    if (isFatal(err)) fatal = message(err);
  }
  let len = writeMessage(sab, reply, blobs);
  if (len < 0) {
    status = NnErrno.TOO_LARGE;
    len = writeMessage(sab, { op: "error", message: "the answer exceeds the channel's size" }, []);
  }
  Atomics.store(ctrl, RESP_LEN, len);
  Atomics.store(ctrl, RESP_STATUS, status);
  Atomics.store(ctrl, RESP_SEQ, seq);
  Atomics.notify(ctrl, RESP_SEQ);
  // After the answer: the guest gets the engine's own reason, then the Worker is replaced.
  if (fatal !== undefined) post({ t: "fatal", message: fatal });
}

type Handled = { status: NnErrnoValue; reply: ChannelAnswer; blobs: Uint8Array[] };

const fail = (status: NnErrnoValue, message: string, ms?: number): Handled => ({
  status,
  reply: { op: "error", message, ...(ms === undefined ? {} : { ms }) },
  blobs: [],
});

async function handle(lane: number, req: ChannelRequest, area: Uint8Array): Promise<Handled> {
  const grant = grants.get(req.inst);
  // The runtime's thread registered which instance runs where and what it may use.
  if (!grant || grant.lane !== lane) {
    return fail(NnErrno.INVALID_ARGUMENT, `instance ${req.inst} has no nn grant on this worker`);
  }
  if (!grant.models.has(req.model)) {
    return fail(NnErrno.NOT_FOUND, `model "${req.model}" is not granted (grants.nn)`);
  }
  const model = models.get(req.model);
  if (!model) return fail(NnErrno.NOT_FOUND, `model "${req.model}" is not installed`);
  if (req.op === "load") {
    return {
      status: NnErrno.SUCCESS,
      reply: {
        op: "load",
        sha256: model.sha256,
        info: model.info,
        maxElements: model.maxElements,
        cost: model.cost,
      },
      blobs: [],
    };
  }
  if (Date.now() > req.deadline) {
    return fail(NnErrno.BUSY, "the deadline passed while the call waited for the engine");
  }
  return await compute(model, req.inputs, area);
}

const ARRAYS = {
  float32: Float32Array,
  float64: Float64Array,
  uint8: Uint8Array,
  int32: Int32Array,
  int64: BigInt64Array,
} as const;

async function compute(model: Model, inputs: WireTensor[], area: Uint8Array): Promise<Handled> {
  const spec = model.info.inputs;
  if (inputs.length !== spec.length) {
    return fail(
      NnErrno.INVALID_ARGUMENT,
      `the model takes ${spec.length} input(s), ${inputs.length} were set`,
    );
  }
  const feeds: Record<string, OrtTensor> = {};
  for (let i = 0; i < spec.length; i++) {
    const t = inputs[i];
    const problem = checkTensor(spec[i], t.type, t.dims, t.length, model.maxElements);
    if (problem) return fail(problem.status, `input ${i} (${spec[i].name}): ${problem.message}`);
    const bytes = tensorBytes(area, t);
    if (!bytes) return fail(NnErrno.INVALID_ARGUMENT, `input ${i}: data out of range`);
    // A copy in an ordinary buffer, aligned for its type (the shared view is neither).
    const copy = bytes.slice();
    feeds[spec[i].name] = new ort!.Tensor(t.type, new ARRAYS[t.type](copy.buffer), t.dims);
  }
  const t0 = performance.now();
  const results = await model.session.run(feeds);
  const ms = performance.now() - t0;
  const outputs: WireTensor[] = [];
  const blobs: Uint8Array[] = [];
  for (const o of model.info.outputs) {
    const r = results[o.name];
    const type = r.type as keyof typeof ARRAYS;
    if (!(type in ARRAYS)) {
      return fail(NnErrno.UNSUPPORTED_OPERATION, `output ${o.name} has type ${r.type}`, ms);
    }
    const dims = dimsOf(r.dims);
    const elements = dims.reduce((a, b) => a * b, 1);
    if (elements > model.maxElements) {
      return fail(
        NnErrno.TOO_LARGE,
        `output ${o.name} has ${elements} elements, the model's limit is ${model.maxElements}`,
        ms,
      );
    }
    const data = r.data;
    blobs.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    outputs.push({ type, dims, offset: 0, length: data.byteLength });
  }
  let at = 0;
  outputs.forEach((o) => {
    o.offset = at;
    at += (o.length + 7) & ~7;
  });
  return {
    status: NnErrno.SUCCESS,
    reply: { op: "compute", sha256: model.sha256, ms, outputs },
    blobs,
  };
}

self.onmessage = (e: MessageEvent<EngineRequest>) => {
  const msg = e.data;
  serial(() => control(msg)).catch((err) => {
    post({ t: "error", req: msg.req, message: message(err) });
    if (isFatal(err)) post({ t: "fatal", message: message(err) });
  });
};
