/**
 * Messages between the runtime's thread ({@link NnEngine} in `engine.ts`)
 * and the engine's Worker (`engine_worker.ts`).
 *
 * @module
 */

import type { ComputeCost, ModelInfo } from "./channel.ts";

/** Runtime → engine. Each carries `req`, answered by an {@link EngineReply} with the same `req`. */
export type EngineRequest =
  | { t: "init"; req: number; src: string; wasm: Uint8Array; memoryBytes: number }
  | { t: "validate"; req: number; bytes: Uint8Array }
  | {
    t: "put";
    req: number;
    name: string;
    sha256: string;
    bytes: Uint8Array;
    maxElements: number;
    cost: ComputeCost | null;
  }
  | { t: "drop"; req: number; name: string }
  | { t: "grant"; req: number; inst: number; lane: number; models: string[] }
  | { t: "revoke"; req: number; inst: number }
  | { t: "attach"; req: number; lane: number; sab: SharedArrayBuffer }
  | { t: "detach"; req: number; lane: number }
  | { t: "stats"; req: number };

/** Engine → runtime. */
export type EngineReply =
  | { t: "ok"; req: number }
  | { t: "info"; req: number; info: ModelInfo; cost: ComputeCost | null }
  | { t: "stats"; req: number; heapBytes: number; jsHeapBytes: number; models: string[] }
  | { t: "error"; req: number; message: string }
  /** The engine's wasm instance aborted (out of memory, a bug): the Worker must be replaced. */
  | { t: "fatal"; message: string };
