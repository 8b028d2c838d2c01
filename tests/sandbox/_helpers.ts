/**
 * Shared helpers of the sandbox tests: WAT compiled by the real wabt
 * `wat2wasm`, the runtime's real Store and Bus, and manifests.
 *
 * @module
 */

import { Bus, ReadingLog, Store } from "../../runtime/mod.ts";
import type { Manifest, ModuleHostOptions } from "../../sandbox/mod.ts";
import { ModuleHost } from "../../sandbox/module_host.ts";
import { parseManifest } from "../../sandbox/manifest.ts";

const cache = new Map<string, Uint8Array>();

/** Compiles WAT text with wabt's wat2wasm. */
export async function wat(source: string): Promise<Uint8Array> {
  const hit = cache.get(source);
  if (hit) return hit;
  const dir = await Deno.makeTempDir({ prefix: "edged-wat-" });
  try {
    await Deno.writeTextFile(`${dir}/m.wat`, source);
    const out = await new Deno.Command("wat2wasm", {
      args: ["--enable-all", `${dir}/m.wat`, "-o", `${dir}/m.wasm`],
    }).output();
    if (!out.success) throw new Error(`wat2wasm failed: ${new TextDecoder().decode(out.stderr)}`);
    const bytes = await Deno.readFile(`${dir}/m.wasm`);
    cache.set(source, bytes);
    return bytes;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** ABI v1 exports shared by the test modules: a bump buffer at 1024 and a memory. */
export const ABI = `
  (memory (export "memory") 1)
  (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))`;

/** A WAT module with the ABI exports plus `body` (which must define edge_on_message). */
export function module(body: string, imports = ""): Promise<Uint8Array> {
  return wat(`(module ${imports} ${ABI} ${body})`);
}

/** A manifest with test-friendly defaults; `over` is merged shallowly per section. */
export function manifest(name: string, over: Record<string, unknown> = {}): Manifest {
  const { grants, limits, ...rest } = over as {
    grants?: Record<string, unknown>;
    limits?: Record<string, unknown>;
  };
  return parseManifest({
    name,
    version: "1.0.0",
    ...rest,
    grants: { log: true, ...grants },
    limits: { memory_bytes: 1 << 20, fuel_per_message: 1_000_000, ...limits },
  });
}

/** A runtime-like environment in a temporary data directory. */
export interface Env {
  dataDir: string;
  store: Store;
  bus: Bus;
  /** The reading log modules read readings from (no uplink: retention only). */
  readings: ReadingLog;
  host: ModuleHost;
  /** Messages seen on the bus. */
  seen: { topic: string; payload: string; source: string }[];
  /** Stops the host and closes the store (keeps the directory). */
  close(): Promise<void>;
  /** Stops everything and removes the directory. */
  dispose(): Promise<void>;
}

/** Opens a Store and Bus in `dataDir` (a new temp dir by default) and a started ModuleHost. */
export async function env(
  options: Partial<ModuleHostOptions> & { dataDir?: string } = {},
): Promise<Env> {
  const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "edged-sandbox-" });
  const store = Store.open(dataDir);
  const bus = new Bus({ commits: store.commits });
  const readings = new ReadingLog(store, { forward: false });
  const seen: Env["seen"] = [];
  bus.subscribe(
    "#",
    (m) =>
      seen.push({ topic: m.topic, payload: new TextDecoder().decode(m.payload), source: m.source }),
  );
  const host = await ModuleHost.open({ dataDir, store, bus, readings, ...options });
  await host.start();
  const close = async () => {
    await host.stop();
    store.close();
  };
  return {
    dataDir,
    store,
    bus,
    readings,
    host,
    seen,
    close,
    dispose: async () => {
      await close();
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}

/** Waits until `cond` holds, polling the event loop; fails after `ms`. */
export async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 1));
  }
}

export const enc = (s: string) => new TextEncoder().encode(s);
export const dec = (b: Uint8Array) => new TextDecoder().decode(b);
