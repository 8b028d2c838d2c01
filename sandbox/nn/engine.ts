/**
 * The inference engine as the runtime's thread sees it: one Worker without
 * permissions running onnxruntime-web (`engine_worker.ts`), started on
 * demand and stopped by its owner. Every method answers once the engine has
 * done the work.
 *
 * @module
 */

import { workerEntry } from "../../lib/mod.ts";
import type { ComputeCost, ModelInfo } from "./channel.ts";
import type { EngineReply, EngineRequest } from "./engine_protocol.ts";
import { type EngineFiles, loadEngineFiles } from "./ort_files.ts";
import { WARMUP_MODEL } from "./_warmup.ts";
import { EngineError, EngineStoppedError } from "./errors.ts";

export { EngineError, EngineStoppedError };

/** Options of {@link NnEngine}. */
export interface NnEngineOptions {
  /** Cap of the engine's wasm memory (its heap: models, activations). */
  memoryBytes: number;
  /** Directory of the engine's files (default: embedded, else Deno's npm cache). */
  engineDir?: string;
  /** Called when the engine's wasm instance died (the engine is stopped then). */
  onFatal?: (message: string) => void;
}

/** Smallest engine memory cap: onnxruntime starts with a 16 MiB heap. */
export const MIN_ENGINE_MEMORY_BYTES = 32 * 1024 * 1024;

const WORKER_URL = workerEntry("sandbox/nn/engine_worker.ts");

/** Engine files are read once per process and shared by every start. */
let filesOnce: Promise<EngineFiles> | undefined;
let filesDir: string | undefined;

function files(dir?: string): Promise<EngineFiles> {
  if (!filesOnce || filesDir !== dir) {
    filesDir = dir;
    filesOnce = loadEngineFiles(dir);
    filesOnce.catch(() => {
      filesOnce = undefined;
    });
  }
  return filesOnce;
}

/** The engine Worker and its request bookkeeping. */
export class NnEngine {
  readonly #opts: NnEngineOptions;
  #worker: Worker | undefined;
  #ready: Promise<void> | undefined;
  #pending = new Map<number, (r: EngineReply | EngineStoppedError) => void>();
  #nextReq = 1;
  /** Milliseconds the last start took (reading the files, compiling the wasm). */
  startMs = 0;

  constructor(options: NnEngineOptions) {
    if (!(options.memoryBytes >= MIN_ENGINE_MEMORY_BYTES)) {
      throw new RangeError(
        `engine memory must be at least ${MIN_ENGINE_MEMORY_BYTES} bytes, got ${options.memoryBytes}`,
      );
    }
    this.#opts = options;
  }

  /** Whether the Worker is running (or starting). */
  get running(): boolean {
    return this.#worker !== undefined;
  }

  /** Starts the Worker and loads onnxruntime (once; concurrent callers share the start). */
  start(): Promise<void> {
    if (this.#ready) return this.#ready;
    const t0 = performance.now();
    const worker = new Worker(WORKER_URL, {
      type: "module",
      name: "edged-nn-engine",
      deno: { permissions: "none" },
    } as WorkerOptions);
    this.#worker = worker;
    worker.onmessage = (e: MessageEvent<EngineReply>) => this.#receive(e.data);
    worker.onerror = (e) => {
      e.preventDefault(); // the engine's failure must not take the runtime down
      this.#died(worker, `crashed: ${e.message}`);
    };
    worker.onmessageerror = () => this.#died(worker, "sent a message that could not be read");
    const ready = (async () => {
      const f = await files(this.#opts.engineDir);
      if (this.#worker !== worker) throw new EngineStoppedError("was stopped while starting");
      await this.#call({
        t: "init",
        req: 0,
        src: f.src,
        wasm: f.wasm,
        memoryBytes: this.#opts.memoryBytes,
      });
      // The first session compiles the 14.8 MB wasm: a start is done only after it.
      await this.validate(WARMUP_MODEL);
      this.startMs = performance.now() - t0;
    })();
    this.#ready = ready;
    ready.catch(() => {
      if (this.#worker === worker) this.stop();
    });
    return ready;
  }

  /** Stops the Worker; waiting callers get an {@link EngineStoppedError}. */
  stop(why = "was stopped"): void {
    const w = this.#worker;
    if (w) this.#died(w, why, false);
  }

  /**
   * Ends the Worker at once, as a crash of it would (an uncaught error, its
   * wasm instance aborted): waiting callers get an {@link EngineStoppedError}
   * and `onFatal` runs. For tests of the recovery: onnxruntime turns the
   * failures a model or an input can cause (out of memory in the capped heap,
   * an integer division by zero) into errors, so none at hand kills it.
   */
  kill(why = "was killed"): void {
    const w = this.#worker;
    if (w) this.#died(w, why);
  }

  #died(worker: Worker, why: string, fatal = true): void {
    if (this.#worker !== worker) return;
    worker.terminate();
    this.#worker = undefined;
    this.#ready = undefined;
    const gone = new EngineStoppedError(why);
    for (const settle of this.#pending.values()) settle(gone);
    this.#pending.clear();
    if (fatal) this.#opts.onFatal?.(why);
  }

  #receive(msg: EngineReply): void {
    if (msg.t === "fatal") {
      queueMicrotask(() => this.#died(this.#worker!, `died: ${msg.message}`));
      return;
    }
    const settle = this.#pending.get(msg.req);
    if (!settle) return;
    this.#pending.delete(msg.req);
    settle(msg);
  }

  #call(msg: EngineRequest, transfer: Transferable[] = []): Promise<EngineReply> {
    const w = this.#worker;
    if (!w) return Promise.reject(new EngineStoppedError("is not running"));
    const req = this.#nextReq++;
    return new Promise((resolve, reject) => {
      this.#pending.set(req, (r) => {
        if (r instanceof EngineStoppedError) reject(r);
        else if (r.t === "error") reject(new EngineError(r.message));
        else resolve(r);
      });
      w.postMessage({ ...msg, req }, transfer);
    });
  }

  async #started(msg: EngineRequest): Promise<EngineReply> {
    await this.start();
    return this.#call(msg);
  }

  /**
   * Creates a session of `bytes`, measures one inference and releases it.
   * @returns the model's inputs, outputs and cost.
   * @throws {EngineError} with onnxruntime's reason when the model does not load.
   */
  async validate(bytes: Uint8Array): Promise<{ info: ModelInfo; cost: ComputeCost | null }> {
    const msg: EngineRequest = { t: "validate", req: 0, bytes };
    const r = bytes === WARMUP_MODEL ? await this.#call(msg) : await this.#started(msg);
    const { info, cost } = r as Extract<EngineReply, { t: "info" }>;
    return { info, cost };
  }

  /** Loads (or replaces, between two computations) model `name`. */
  async put(
    name: string,
    sha256: string,
    bytes: Uint8Array,
    maxElements: number,
    cost: ComputeCost | null,
  ): Promise<ModelInfo> {
    const r = await this.#started({ t: "put", req: 0, name, sha256, bytes, maxElements, cost });
    return (r as Extract<EngineReply, { t: "info" }>).info;
  }

  /** Unloads model `name` (no error when it is not loaded). */
  async drop(name: string): Promise<void> {
    if (this.running) await this.#call({ t: "drop", req: 0, name });
  }

  /** Lets instance `inst` on sandbox Worker `lane` use `models`. */
  async grant(inst: number, lane: number, models: string[]): Promise<void> {
    await this.#started({ t: "grant", req: 0, inst, lane, models });
  }

  /** Withdraws instance `inst`'s grant. */
  async revoke(inst: number): Promise<void> {
    if (this.running) await this.#call({ t: "revoke", req: 0, inst });
  }

  /** Serves the requests sandbox Worker `lane` writes into `sab`. */
  async attach(lane: number, sab: SharedArrayBuffer): Promise<void> {
    await this.#started({ t: "attach", req: 0, lane, sab });
  }

  /** Stops serving sandbox Worker `lane`. */
  async detach(lane: number): Promise<void> {
    if (this.running) await this.#call({ t: "detach", req: 0, lane });
  }

  /** The engine's wasm heap size, its Worker's JS heap in use, and its loaded models. */
  async stats(): Promise<{ heapBytes: number; jsHeapBytes: number; models: string[] }> {
    if (!this.running) return { heapBytes: 0, jsHeapBytes: 0, models: [] };
    const r = await this.#call({ t: "stats", req: 0 });
    const { heapBytes, jsHeapBytes, models } = r as Extract<EngineReply, { t: "stats" }>;
    return { heapBytes, jsHeapBytes, models };
  }
}
