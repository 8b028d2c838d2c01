/**
 * Benchmark section `nn` (issue 18): WASI-NN inference through a module
 * beside onnxruntime-web called directly in the same run; the engine's cold
 * start beside compiling its wasm alone; RSS with the engine loaded, and
 * idle RSS with and without the nn service; the bytes the engine adds to the
 * binary beside what importing the npm package would embed.
 *
 * RSS and cold start are measured in child processes of their own.
 *
 * @module
 */
import type { BenchOptions, BenchRow } from "./_report.ts";
import { Bus, Store } from "../../runtime/mod.ts";
import { ModuleHost } from "../../sandbox/module_host.ts";
import { parseManifest } from "../../sandbox/manifest.ts";
import { loadEngineFiles, npmCacheDist } from "../../sandbox/nn/mod.ts";
import { NnEngine } from "../../sandbox/nn/engine.ts";
import { NnService } from "../../sandbox/nn/service.ts";
import { stageEngineFiles } from "../compile.ts";
import { mlp, windowScorer } from "../nn/models.ts";
import { guest, tensorPayload } from "../../tests/sandbox/nn/_helpers.ts";

const SECTION = "nn";
const ME = new URL(import.meta.url).pathname;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

async function child(args: string[]): Promise<Record<string, number>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-worker-options", "--v8-flags=--expose-gc", ME, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
}

/** Per-call latency through a module vs the engine called directly. */
async function latency(quick: boolean): Promise<BenchRow[]> {
  const runs = quick ? 300 : 2000;
  const rows: BenchRow[] = [];
  const files = await loadEngineFiles();
  const dataDir = await Deno.makeTempDir({ prefix: "edged-bench-nn-" });
  const store = Store.open(dataDir);
  const nn = new NnService({ dataDir });
  const host = await ModuleHost.open({ dataDir, store, bus: new Bus(), nn });
  try {
    await host.start();
    const models = [
      { name: "mlp-64-256-10", m: mlp([64, 256, 10], 1) },
      { name: "window-scorer-16", m: windowScorer(16) },
    ];
    for (const { name, m } of models) await nn.install(name, m.bytes);
    await host.install(
      parseManifest({ name: "plain", version: "1.0.0", limits: { memory_bytes: 1 << 20 } }),
      await plainModule(),
    );
    // The delivery round trip alone (runtime thread → sandbox Worker → back), no nn.
    const plain: number[] = [];
    for (let i = 0; i < runs + 20; i++) {
      const t0 = performance.now();
      await host.deliver("plain", "t", new Uint8Array(64 * 4 + 12));
      plain.push(performance.now() - t0);
    }
    plain.splice(0, 20);
    plain.sort((a, b) => a - b);
    for (const p of [50, 99]) {
      rows.push({
        section: SECTION,
        metric: `module deliver p${p} without nn (the delivery round trip the rows below include)`,
        edged: pct(plain, p),
        anchor: null,
        anchorName: "",
        unit: "ms",
        target: "",
      });
    }
    await host.install(
      parseManifest({
        name: "bench",
        version: "1.0.0",
        grants: { publish: ["out/#"], nn: models.map((x) => x.name) },
        limits: { memory_bytes: 1 << 20 },
      }),
      await guest(),
    );
    for (const { name, m } of models) {
      const n = m.inputDims.reduce((a, b) => a * b, 1);
      const payload = tensorPayload(
        m.inputDims,
        Float32Array.from({ length: n }, (_, i) => Math.sin(i)),
      );
      // Alternating rounds of the two paths, so both see the same machine.
      const viaModule: number[] = [];
      const direct: number[] = [];
      const w = new Worker(new URL("./_nn_direct_worker.ts", import.meta.url), {
        type: "module",
        deno: { permissions: "none" },
      } as WorkerOptions);
      try {
        for (let round = 0; round < 4; round++) {
          for (let i = 0; i < runs / 4; i++) {
            const t0 = performance.now();
            const out = await host.deliver("bench", `run/${name}`, payload);
            viaModule.push(performance.now() - t0);
            if (out.status !== 0) throw new Error(`${name}: status ${out.status}`);
          }
          const times = await new Promise<number[]>((resolve, reject) => {
            w.onmessage = (e) => resolve(e.data);
            w.onerror = (e) => reject(new Error(e.message));
            w.postMessage({
              src: files.src,
              wasm: files.wasm,
              model: m.bytes,
              dims: m.inputDims,
              runs: runs / 4,
            });
          });
          direct.push(...times.slice(round === 0 ? 20 : 0));
        }
      } finally {
        w.terminate();
      }
      viaModule.splice(0, 20); // warm-up
      viaModule.sort((a, b) => a - b);
      direct.sort((a, b) => a - b);
      for (const p of [50, 99]) {
        rows.push({
          section: SECTION,
          metric: `${name} inference p${p}, module deliver → output (guest, channel, engine)`,
          edged: pct(viaModule, p),
          anchor: pct(direct, p),
          anchorName: "onnxruntime-web session.run called directly",
          unit: "ms",
          target: "",
        });
      }
    }
  } finally {
    await host.stop();
    nn.stop();
    store.close();
    await Deno.remove(dataDir, { recursive: true });
  }
  return rows;
}

/** Child: one cold start of the engine in this fresh process. */
async function childStart(): Promise<void> {
  const engine = new NnEngine({ memoryBytes: 256 << 20 });
  const t0 = performance.now();
  await engine.start();
  const start = performance.now() - t0;
  engine.stop();
  console.log(JSON.stringify({ start }));
}

/** Child: the bare compile of the engine's wasm in this fresh process (the anchor). */
async function childCompile(): Promise<void> {
  const files = await loadEngineFiles();
  const t0 = performance.now();
  await WebAssembly.compile(files.wasm as Uint8Array<ArrayBuffer>);
  console.log(JSON.stringify({ compile: performance.now() - t0 }));
}

/** Child: RSS (KiB) of a ModuleHost with one module, with or without the nn service / engine. */
async function childRss(mode: "plain" | "nn-idle" | "nn-loaded"): Promise<void> {
  const rss = () => Number(Deno.readTextFileSync("/proc/self/status").match(/VmRSS:\s+(\d+)/)![1]);
  const dataDir = await Deno.makeTempDir({ prefix: "edged-bench-nn-rss-" });
  const store = Store.open(dataDir);
  const nn = mode === "plain" ? undefined : new NnService({ dataDir });
  const host = await ModuleHost.open({ dataDir, store, bus: new Bus(), nn });
  await host.start();
  const wasm = await guest();
  const m = mlp([64, 256, 10], 1);
  if (mode === "nn-loaded") await nn!.install("m", m.bytes);
  await host.install(
    parseManifest({
      name: "g",
      version: "1.0.0",
      grants: { publish: ["out/#"], nn: mode === "nn-loaded" ? ["m"] : [] },
      limits: { memory_bytes: 1 << 20 },
    }),
    mode === "nn-loaded" ? wasm : await plainModule(),
  );
  if (mode === "nn-loaded") {
    const p = tensorPayload([1, 64], new Float32Array(64));
    for (let i = 0; i < 200; i++) await host.deliver("g", "run/m", p);
  } else {
    for (let i = 0; i < 200; i++) await host.deliver("g", "t", new Uint8Array(4));
  }
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((r) => setTimeout(r, 200));
  console.log(
    JSON.stringify({ rssKiB: rss(), heapMiB: (await (nn?.engineStatus()))?.heap_bytes ?? 0 }),
  );
  await host.stop();
  nn?.stop();
  store.close();
  await Deno.remove(dataDir, { recursive: true });
}

async function plainModule(): Promise<Uint8Array> {
  const { wat } = await import("../../tests/sandbox/_helpers.ts");
  return await wat(`(module (memory (export "memory") 1)
    (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (i32.const 0)))`);
}

async function duBytes(dir: string): Promise<number> {
  let total = 0;
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) total += await duBytes(p);
    else if (e.isFile) total += (await Deno.stat(p)).size;
  }
  return total;
}

/** Runs the section. */
export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  const rows = await latency(opts.quick);

  const starts: number[] = [];
  const compiles: number[] = [];
  for (let i = 0; i < (opts.quick ? 1 : 3); i++) {
    starts.push((await child(["child-start"])).start);
    compiles.push((await child(["child-compile"])).compile);
  }
  starts.sort((a, b) => a - b);
  compiles.sort((a, b) => a - b);
  const median = (a: number[]) => a[Math.floor(a.length / 2)];
  rows.push({
    section: SECTION,
    metric:
      `engine cold start in a fresh process (Worker, files, wasm compile, warm-up model); median of ${starts.length}`,
    edged: median(starts),
    anchor: median(compiles),
    anchorName: "WebAssembly.compile of the 14.8 MB ort wasm alone (a fresh process each)",
    unit: "ms",
    target: "",
    note: `starts: ${starts.map((s) => s.toFixed(0)).join(", ")} ms; compiles: ${
      compiles.map((s) => s.toFixed(0)).join(", ")
    } ms`,
  });

  const plain = await child(["child-rss", "plain"]);
  const idle = await child(["child-rss", "nn-idle"]);
  const loaded = await child(["child-rss", "nn-loaded"]);
  rows.push({
    section: SECTION,
    metric: "RSS, ModuleHost + one module, nn service configured but no module granted nn",
    edged: idle.rssKiB / 1024,
    anchor: plain.rssKiB / 1024,
    anchorName: "the same without the nn service",
    unit: "MiB",
    target: "unchanged",
  });
  rows.push({
    section: SECTION,
    metric: "RSS with the engine loaded (one nn module, MLP 64-256-10, 200 calls)",
    edged: loaded.rssKiB / 1024,
    anchor: plain.rssKiB / 1024,
    anchorName: "ModuleHost + one module, no engine",
    unit: "MiB",
    target: "",
    note: `+${((loaded.rssKiB - plain.rssKiB) / 1024).toFixed(0)} MiB; engine wasm heap ${
      (loaded.heapMiB / (1 << 20)).toFixed(0)
    } MiB`,
  });

  const embedded = await stageEngineFiles();
  const pkg = await duBytes((await npmCacheDist()).replace(/\/dist$/, ""));
  rows.push({
    section: SECTION,
    metric: "bytes the engine adds to the binary (ort bundle + wasm, --include)",
    edged: embedded / 1e6,
    anchor: pkg / 1e6,
    anchorName: "the whole onnxruntime-web package (what importing it embeds)",
    unit: "MB",
    target: "",
    note: "deno compile cannot run here (no denort): the embedded files' bytes, not a built binary",
  });
  return rows;
}

if (import.meta.main && Deno.args[0] === "child-start") await childStart();
if (import.meta.main && Deno.args[0] === "child-compile") await childCompile();
if (import.meta.main && Deno.args[0] === "child-rss") {
  await childRss(Deno.args[1] as "plain" | "nn-idle" | "nn-loaded");
}
