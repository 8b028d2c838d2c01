/// <reference lib="deno.worker" />
/**
 * Bench anchor: onnxruntime-web called directly (no module, no sandbox
 * Worker, no channel), in a Worker loaded the same way as the engine's.
 * Receives the engine files and a model, answers per-run times in ms.
 *
 * @module
 */

interface Msg {
  src: string;
  wasm: Uint8Array;
  model: Uint8Array;
  dims: number[];
  runs: number;
}

self.onmessage = async (e: MessageEvent<Msg>) => {
  const { src, wasm, model, dims, runs } = e.data;
  Object.defineProperty(globalThis, "location", { value: undefined, configurable: true });
  const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
  // deno-lint-ignore no-explicit-any
  const ort: any = await import(url);
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmBinary = wasm;
  const session = await ort.InferenceSession.create(model);
  const n = dims.reduce((a, b) => a * b, 1);
  const x = new Float32Array(n).map((_, i) => Math.sin(i));
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", x.slice(), dims) };
    const r = await session.run(feeds);
    void r[session.outputNames[0]].data;
    times.push(performance.now() - t0);
  }
  self.postMessage(times);
};
