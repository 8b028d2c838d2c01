/**
 * The service and engine classes for tools that run one themselves (`edged
 * model` on a stopped edged, `edged repo` validating a model): loaded on
 * call, so that importing the sandbox loads neither.
 *
 * @module
 */
import type { NnService } from "./service.ts";
import type { NnEngine } from "./engine.ts";

/** {@linkcode NnService}, loaded on first call. */
export async function nnServiceClass(): Promise<typeof NnService> {
  return (await import("./service.ts")).NnService;
}

/** {@linkcode NnEngine}, loaded on first call. */
export async function nnEngineClass(): Promise<typeof NnEngine> {
  return (await import("./engine.ts")).NnEngine;
}
