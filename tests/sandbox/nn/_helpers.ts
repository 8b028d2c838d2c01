/**
 * Helpers of the WASI-NN tests: a generic WAT guest, an environment with a
 * real ModuleHost, NnService and engine, and tensor encoding.
 *
 * @module
 */

import { NnService, type NnServiceOptions } from "../../../sandbox/nn/service.ts";
import { type Env, env, manifest, wat } from "../_helpers.ts";
import type { ModuleHostOptions } from "../../../sandbox/mod.ts";

/**
 * A WAT guest for any one-input float32 model. Topic `run/<model>`; payload:
 * u32 rank, rank u32 dims, then the f32 data (little-endian). It loads the
 * model by name, sets input 0, computes and publishes output 0 on
 * `out/<model>` (raw f32 bytes). On an error it returns step × 100 + errno
 * (1 load_by_name, 2 init_execution_context, 3 set_input, 4 compute,
 * 5 get_output); topic `load` calls `load` with an empty builder instead
 * (answer 600 + errno). `OUT_CAP` bytes of output buffer.
 */
export function guestWat(outCap = 65536): string {
  return `(module
  (import "wasi_ephemeral_nn" "load" (func $load (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "load_by_name" (func $load_by_name (param i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "init_execution_context" (func $init (param i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "set_input" (func $set_input (param i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "compute" (func $compute (param i32) (result i32)))
  (import "wasi_ephemeral_nn" "get_output" (func $get_output (param i32 i32 i32 i32 i32) (result i32)))
  (import "edge" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  ;; 0: graph, 4: context, 8: bytes written, 16-36: tensor record, 64: output topic,
  ;; 1024: message buffer, 131072: output buffer.
  (memory (export "memory") 8)
  (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "edge_on_message") (param $tp i32) (param $tl i32) (param $pp i32) (param $pl i32) (result i32)
    (local $r i32) (local $rank i32)
    (if (i32.eq (local.get $tl) (i32.const 4)) (then
      (return (i32.add (i32.const 600)
        (call $load (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 0))))))
    (local.set $r (call $load_by_name (i32.add (local.get $tp) (i32.const 4))
      (i32.sub (local.get $tl) (i32.const 4)) (i32.const 0)))
    (if (local.get $r) (then (return (i32.add (i32.const 100) (local.get $r)))))
    (local.set $r (call $init (i32.load (i32.const 0)) (i32.const 4)))
    (if (local.get $r) (then (return (i32.add (i32.const 200) (local.get $r)))))
    (local.set $rank (i32.load (local.get $pp)))
    (i32.store (i32.const 16) (i32.add (local.get $pp) (i32.const 4)))
    (i32.store (i32.const 20) (local.get $rank))
    (i32.store8 (i32.const 24) (i32.const 1))
    (i32.store (i32.const 28)
      (i32.add (i32.add (local.get $pp) (i32.const 4)) (i32.shl (local.get $rank) (i32.const 2))))
    (i32.store (i32.const 32)
      (i32.sub (i32.sub (local.get $pl) (i32.const 4)) (i32.shl (local.get $rank) (i32.const 2))))
    (local.set $r (call $set_input (i32.load (i32.const 4)) (i32.const 0) (i32.const 16)))
    (if (local.get $r) (then (return (i32.add (i32.const 300) (local.get $r)))))
    (local.set $r (call $compute (i32.load (i32.const 4))))
    (if (local.get $r) (then (return (i32.add (i32.const 400) (local.get $r)))))
    (local.set $r (call $get_output (i32.load (i32.const 4)) (i32.const 0)
      (i32.const 131072) (i32.const ${outCap}) (i32.const 8)))
    (if (local.get $r) (then (return (i32.add (i32.const 500) (local.get $r)))))
    (i32.store (i32.const 64) (i32.const 0x2f74756f)) ;; "out/"
    (memory.copy (i32.const 68) (i32.add (local.get $tp) (i32.const 4)) (i32.sub (local.get $tl) (i32.const 4)))
    (drop (call $publish (i32.const 64) (local.get $tl) (i32.const 131072) (i32.load (i32.const 8))))
    (i32.const 0)))`;
}

/** The guest's compiled bytes. */
export function guest(outCap?: number): Promise<Uint8Array> {
  return wat(guestWat(outCap));
}

/** A manifest granting `models` and publishing on `out/#`. */
export function nnManifest(name: string, models: string[], over: Record<string, unknown> = {}) {
  const { limits, ...rest } = over as { limits?: Record<string, unknown> };
  return manifest(name, {
    ...rest,
    grants: { publish: ["out/#"], nn: models },
    limits: { memory_bytes: 1 << 20, fuel_per_message: 50_000_000, ...limits },
  });
}

/** The payload the guest takes: rank, dims, f32 data. */
export function tensorPayload(dims: number[], data: Float32Array | number[]): Uint8Array {
  const f = data instanceof Float32Array ? data : Float32Array.from(data);
  const out = new Uint8Array(4 + 4 * dims.length + f.byteLength);
  const v = new DataView(out.buffer);
  v.setUint32(0, dims.length, true);
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d, true));
  out.set(new Uint8Array(f.buffer, f.byteOffset, f.byteLength), 4 + 4 * dims.length);
  return out;
}

/** f32 values of raw little-endian bytes. */
export function floats(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.slice().buffer);
}

/** Largest absolute difference. */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** A ModuleHost environment wired to a real NnService (engine stopped with it). */
export async function nnEnv(
  nnOptions: Partial<NnServiceOptions> = {},
  hostOptions: Partial<ModuleHostOptions> = {},
): Promise<Env & { nn: NnService }> {
  const dataDir = await Deno.makeTempDir({ prefix: "edged-nn-" });
  const nn = new NnService({ dataDir, idleStopMs: 50, ...nnOptions });
  const e = await env({ dataDir, nn, ...hostOptions });
  return {
    ...e,
    nn,
    close: async () => {
      await e.close();
      nn.stop();
    },
    dispose: async () => {
      await e.close();
      nn.stop();
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}
