/**
 * Model-swap soak: a module computes with a model while the operator
 * installs a new version of it again and again, in this process (a real
 * ModuleHost, NnService and engine Worker). Samples the process's RSS after
 * each swap and reports its growth after a warm-up. Run it in a process of
 * its own: RSS is the whole process's.
 *
 * The default tests run a short round (`tests/sandbox/nn/soak_test.ts`); the
 * long one runs here:
 *
 *     deno task soak-nn [--swaps 1000] [--warmup 20] [--calls 20] [--json]
 *
 * @module
 */

import { Bus, Store } from "../../runtime/mod.ts";
import { Command, parseCli } from "../_cli.ts";
import { ModuleHost } from "../../sandbox/module_host.ts";
import { parseManifest } from "../../sandbox/manifest.ts";
import { NnService } from "../../sandbox/nn/service.ts";
import { mlp } from "./models.ts";

/** Options of {@link modelSwapSoak}. */
export interface SoakOptions {
  /** Model installs after the first. @default 200 */
  swaps?: number;
  /** Computations through the module after each swap. @default 5 */
  calls?: number;
  /** Swaps before the baseline sample. @default 20 */
  warmup?: number;
  /** The guest (a module taking `run/<model>` with the tensor payload of the tests). */
  wasm: Uint8Array;
  /** Called after each swap. */
  onSwap?: (i: number, rssMiB: number) => void;
}

/** What a soak measured. */
export interface SoakResult {
  swaps: number;
  /** RSS after the warm-up swaps. */
  baselineMiB: number;
  /** RSS at the end. */
  finalMiB: number;
  /** Highest RSS after the warm-up. */
  peakMiB: number;
  /** Mean RSS of the last quarter minus the first quarter after warm-up. */
  growthMiB: number;
  /** Computations that did not answer status 0. */
  failures: number;
  /** Median time of one install (validate, persist, replace in the engine). */
  swapP50Ms: number;
  /** The engine's wasm heap after the warm-up and at the end (it never shrinks: a leak shows). */
  heapBaselineMiB: number;
  heapFinalMiB: number;
  /** JS heap in use in the engine's Worker and in this thread, after the warm-up and at the end
   * (after a collection when run with --v8-flags=--expose-gc, as `deno task soak-nn` does). */
  engineJsBaselineMiB: number;
  engineJsFinalMiB: number;
  mainJsBaselineMiB: number;
  mainJsFinalMiB: number;
}

const mib = () => Deno.memoryUsage().rss / (1 << 20);
const M = 1 << 20;
const mainJs = () => {
  (globalThis as { gc?: () => void }).gc?.();
  return Deno.memoryUsage().heapUsed / M;
};

/** Runs the soak in a temporary data directory. */
export async function modelSwapSoak(o: SoakOptions): Promise<SoakResult> {
  const { swaps = 200, calls = 5, warmup = 20, wasm, onSwap } = o;
  const dataDir = await Deno.makeTempDir({ prefix: "edged-nn-soak-" });
  const store = Store.open(dataDir);
  const nn = new NnService({ dataDir });
  const host = await ModuleHost.open({ dataDir, store, bus: new Bus(), nn });
  try {
    await host.start();
    // ~300 KB of weights: a session leaked per swap would show within a few dozen swaps.
    const versions = [mlp([64, 1024, 10], 1), mlp([64, 1024, 10], 2)];
    await nn.install("m", versions[0].bytes);
    await host.install(
      parseManifest({
        name: "soak",
        version: "1.0.0",
        grants: { publish: ["out/#"], nn: ["m"] },
        limits: { memory_bytes: 1 << 20 },
      }),
      wasm,
    );
    const payload = new Uint8Array(4 + 8 + 64 * 4);
    const v = new DataView(payload.buffer);
    v.setUint32(0, 2, true);
    v.setUint32(4, 1, true);
    v.setUint32(8, 64, true);
    let failures = 0;
    const samples: number[] = [];
    const swapMs: number[] = [];
    let baseline = 0;
    let heapBaseline = 0;
    let engineJsBaseline = 0;
    let mainJsBaseline = 0;
    for (let i = 0; i < warmup + swaps; i++) {
      const t0 = performance.now();
      await nn.install("m", versions[i % 2].bytes);
      swapMs.push(performance.now() - t0);
      for (let c = 0; c < calls; c++) {
        const out = await host.deliver("soak", "run/m", payload);
        if (out.status !== 0) {
          failures++;
          console.error(`swap ${i}: status ${out.status}`, JSON.stringify(out.logs), out.error);
        }
      }
      const rss = mib();
      if (i === warmup - 1) {
        baseline = rss;
        const s = await nn.engineStatus();
        heapBaseline = s.heap_bytes / M;
        engineJsBaseline = s.js_heap_bytes / M;
        mainJsBaseline = mainJs();
      }
      if (i >= warmup) samples.push(rss);
      onSwap?.(i, rss);
    }
    const q = Math.max(1, Math.floor(samples.length / 4));
    const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
    swapMs.sort((a, b) => a - b);
    const end = await nn.engineStatus();
    return {
      swaps,
      baselineMiB: baseline,
      finalMiB: samples.at(-1) ?? baseline,
      peakMiB: Math.max(...samples),
      growthMiB: mean(samples.slice(-q)) - mean(samples.slice(0, q)),
      failures,
      swapP50Ms: swapMs[Math.floor(swapMs.length / 2)],
      heapBaselineMiB: heapBaseline,
      heapFinalMiB: end.heap_bytes / M,
      engineJsBaselineMiB: engineJsBaseline,
      engineJsFinalMiB: end.js_heap_bytes / M,
      mainJsBaselineMiB: mainJsBaseline,
      mainJsFinalMiB: mainJs(),
    };
  } finally {
    await host.stop();
    nn.stop();
    store.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

if (import.meta.main) {
  const program = new Command("soak-nn")
    .description(
      "A module computes with a model while it is installed again and again; RSS growth.",
    )
    .option("--swaps <n>", "model installs", "1000")
    .option("--warmup <n>", "swaps before RSS is taken as the baseline", "20")
    .option("--calls <n>", "module calls between swaps", "20")
    .option("--json", "one JSON line instead of progress and an indented report");
  const stop = parseCli(program, Deno.args);
  if (stop !== null) Deno.exit(stop);
  const o = program.opts();
  const json = o.json ?? false;
  const { guest } = await import("../../tests/sandbox/nn/_helpers.ts");
  const r = await modelSwapSoak({
    swaps: Number(o.swaps),
    warmup: Number(o.warmup),
    calls: Number(o.calls),
    wasm: await guest(),
    onSwap: (i, rss) => {
      if (!json && i % 50 === 0) console.log(`swap ${i}: RSS ${rss.toFixed(1)} MiB`);
    },
  });
  console.log(JSON.stringify(r, null, json ? 0 : 2));
}
