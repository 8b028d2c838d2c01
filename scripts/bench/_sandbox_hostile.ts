/**
 * Part `hostile` of the `sandbox` benchmark section: the "hostile
 * neighbours" table of issue 11. For each hostile module of the catalogue
 * (`tests/sandbox/_hostile_modules.ts`), a fresh edged process with two
 * Workers runs it beside two neighbours while readings are ingested; the same
 * layout with an idle module in its place is the baseline, measured in the
 * same run.
 *
 * Layout: neighbour `near` on Worker 0 (where the hostile module is placed
 * too), neighbour `far` on Worker 1, the hostile module subscribed to
 * `sensors/#` so every ingested reading reaches it. Load, each on a fixed
 * schedule with latency counted from the scheduled time (so a stall shows up
 * instead of hiding): one reading every 10 ms through `POST /api/v1/data`, one
 * message every 20 ms to each neighbour through `POST
 * /api/v1/modules/{name}/messages` (rates this 2-core machine serves with
 * room to spare, so the load generator is not what is measured). Measured: the wall time of one hostile
 * call (sent through the API before the load, so it starts on Worker 0 beside
 * `near`), each neighbour's p99, ingest p99, RSS growth (peak during the run
 * over the RSS before it), data-directory growth, 5xx answers, and whether the
 * process is still up. Each hostile run is paired with an idle run just
 * before it (the machine is shared: its load drifts over minutes); a full run
 * repeats the pair three times and reports medians.
 *
 * @module
 */

import type { BenchRow } from "./_report.ts";
import { type EdgedProcess, startEdged } from "../../tests/_helpers/edged.ts";
import { type Hostile, HOSTILES } from "../../tests/sandbox/_hostile_modules.ts";
import { pct, wat2wasm } from "./_sandbox_common.ts";
import { callDeadlineMs } from "../../sandbox/costs.ts";

const SECTION = "sandbox";

/** A neighbour: answers 7. */
const SEVEN = `(module (memory (export "memory") 1 1)
  (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (i32.const 7)))`;

/** The idle baseline's stand-in for the hostile module: does nothing. */
const IDLE: Hostile = {
  name: "idle",
  what: "does nothing",
  wat: () => SEVEN,
  manifest: () => ({}),
};

interface Measure {
  /** Wall time of one call of the module (ms), through the API. */
  callMs: number;
  /** What that call answered (its error code, or "ok"). */
  callOutcome: string;
  nearP99: number;
  farP99: number;
  ingestP99: number;
  /** CPU the runtime's thread (the one serving ingest) spent per second of load (ms). */
  mainCpuMsPerS: number;
  rssGrowMiB: number;
  dataGrowMiB: number;
  fiveXX: number;
  alive: boolean;
}

function rssKiB(pid: number, key: "VmRSS" | "VmHWM"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
}

/** CPU time of thread `tid` of process `pid`, in ms (utime + stime, 100 ticks a second). */
function threadCpuMs(pid: number, tid = pid): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function duBytes(dir: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) n += await duBytes(p);
    else if (e.isFile) n += (await Deno.stat(p)).size;
  }
  return n;
}

async function install(
  edged: EdgedProcess,
  name: string,
  wasm: Uint8Array,
  manifest: Record<string, unknown>,
): Promise<{ worker: number }> {
  const form = new FormData();
  form.set("manifest", JSON.stringify({ name, version: "1.0.0", ...manifest }));
  form.set("module", new Blob([wasm as Uint8Array<ArrayBuffer>]), "module.wasm");
  const res = await edged.api(`/api/v1/modules/${name}`, { method: "PUT", body: form });
  const body = await res.json();
  if (res.status >= 300) throw new Error(`install ${name}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/**
 * Calls `send` every `everyMs` until `endAt`, on a fixed schedule; returns
 * the latencies from each scheduled time and the 5xx count.
 */
async function schedule(
  everyMs: number,
  endAt: number,
  send: (i: number) => Promise<Response>,
): Promise<{ lat: number[]; fiveXX: number }> {
  const lat: number[] = [];
  let fiveXX = 0;
  const pending: Promise<void>[] = [];
  const start = performance.now();
  let i = 0;
  while (performance.now() < endAt) {
    const now = performance.now();
    while (start + i * everyMs <= now) {
      const at = start + i * everyMs;
      pending.push(
        send(i).then(async (res) => {
          await res.body?.cancel();
          if (res.status >= 500) fiveXX++;
          lat.push(performance.now() - at);
        }, () => {
          fiveXX++;
        }),
      );
      i++;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
  return { lat, fiveXX };
}

async function measure(dir: string, h: Hostile, seconds: number): Promise<Measure> {
  const sensorDir = await Deno.makeTempDir({ dir });
  const ctx = { sensorPath: `${sensorDir}/temp1_input` };
  await Deno.writeTextFile(ctx.sensorPath, "42000\n");
  const edged = await startEdged();
  try {
    const seven = await wat2wasm(dir, "seven", SEVEN);
    const near = await install(edged, "near", seven, {});
    const far = await install(edged, "far", seven, {});
    const bytes = await wat2wasm(dir, `hostile-${h.name.replace(/\W/g, "_")}`, h.wat(ctx));
    const placed = await install(edged, "hostile", bytes, {
      subscribe: ["sensors/#"],
      ...h.manifest(ctx),
    });
    if (near.worker !== 0 || far.worker !== 1 || placed.worker !== 0) {
      throw new Error(
        `unexpected placement: near ${near.worker}, far ${far.worker}, hostile ${placed.worker}`,
      );
    }
    const post = (path: string, body: unknown) =>
      edged.api(path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    // Settle, then the baselines of RSS and the data directory.
    await new Promise((r) => setTimeout(r, 300));
    const rss0 = rssKiB(edged.child.pid, "VmRSS");
    const data0 = await duBytes(edged.dataDir);
    // One call of the module through the API, beside `near` on Worker 0.
    const t0 = performance.now();
    const first = await post("/api/v1/modules/hostile/messages", { topic: "t", payload: 1 });
    const callMs = performance.now() - t0;
    const answer = await first.json();
    const callOutcome = first.status >= 300
      ? `HTTP ${first.status}`
      : answer.error?.code ?? `status ${answer.status}`;
    const cpu0 = threadCpuMs(edged.child.pid);
    const loadStart = performance.now();
    const endAt = loadStart + seconds * 1000;
    const [ingest, n, f] = await Promise.all([
      schedule(
        5,
        endAt,
        (i) => post("/api/v1/data", { device_id: "pump-7", metric: "temperature", value: i }),
      ),
      schedule(20, endAt, (i) => post("/api/v1/modules/near/messages", { topic: "t", payload: i })),
      schedule(20, endAt, (i) => post("/api/v1/modules/far/messages", { topic: "t", payload: i })),
    ]);
    const mainCpuMsPerS = (threadCpuMs(edged.child.pid) - cpu0) /
      ((performance.now() - loadStart) / 1000);
    await new Promise((r) => setTimeout(r, 300));
    const alive = await edged.api("/healthz").then(async (r) => {
      await r.body?.cancel();
      return r.status === 200;
    }, () => false);
    return {
      callMs,
      callOutcome,
      nearP99: pct(n.lat, 99),
      farP99: pct(f.lat, 99),
      ingestP99: pct(ingest.lat, 99),
      mainCpuMsPerS,
      rssGrowMiB: (rssKiB(edged.child.pid, "VmHWM") - rss0) / 1024,
      dataGrowMiB: ((await duBytes(edged.dataDir)) - data0) / (1 << 20),
      fiveXX: ingest.fiveXX + n.fiveXX + f.fiveXX + (first.status >= 500 ? 1 : 0),
      alive,
    };
  } finally {
    await edged.stop();
    await Deno.remove(edged.dataDir, { recursive: true }).catch(() => {});
    await Deno.remove(sensorDir, { recursive: true });
  }
}

/** Each number the median over `ms`; counts summed, `alive` only if always. */
function median(ms: Measure[]): Measure {
  const mid = (k: keyof Measure) => pct(ms.map((m) => m[k] as number), 50);
  return {
    callMs: mid("callMs"),
    callOutcome: [...new Set(ms.map((m) => m.callOutcome))].join(", "),
    nearP99: mid("nearP99"),
    farP99: mid("farP99"),
    ingestP99: mid("ingestP99"),
    mainCpuMsPerS: mid("mainCpuMsPerS"),
    rssGrowMiB: mid("rssGrowMiB"),
    dataGrowMiB: mid("dataGrowMiB"),
    fiveXX: ms.reduce((n, m) => n + m.fiveXX, 0),
    alive: ms.every((m) => m.alive),
  };
}

/**
 * The hostile-neighbours rows: per hostile module, each measure beside the
 * idle baseline; in full runs the median of 3 pairs of runs (idle, hostile).
 */
export async function hostile(dir: string, quick: boolean): Promise<BenchRow[]> {
  const seconds = quick ? 3 : 10;
  const only = Deno.env.get("EDGED_BENCH_HOSTILE")?.split(",");
  // edged refuses to start on EDGED_* variables it does not know, and the child inherits ours.
  for (const name of Object.keys(Deno.env.toObject())) {
    if (name.startsWith("EDGED_BENCH_")) Deno.env.delete(name);
  }
  const rounds = quick ? 1 : 3;
  const rows: BenchRow[] = [];
  const budgetMs = callDeadlineMs(10_000_000);
  for (const h of HOSTILES) {
    if (only && !only.includes(h.name)) continue;
    const idles: Measure[] = [];
    const runs: Measure[] = [];
    for (let i = 0; i < rounds; i++) {
      idles.push(await measure(dir, IDLE, seconds));
      runs.push(await measure(dir, h, seconds));
    }
    const idle = median(idles);
    const m = median(runs);
    const r = (
      metric: string,
      edged: number,
      anchor: number | null,
      unit: string,
      target: string,
      note = "",
    ): BenchRow => ({
      section: SECTION,
      metric: `hostile ${h.name}: ${metric}`,
      edged,
      anchor,
      anchorName: anchor === null ? "" : "idle baseline, same run",
      unit,
      target,
      note,
    });
    rows.push(
      r(
        "one call's wall time through the API",
        m.callMs,
        idle.callMs,
        "ms",
        h.withinFuel ? "" : "<= 100 ms",
        `${h.what}; answered ${m.callOutcome}; the wall-clock deadline of a 10 M budget is ${budgetMs} ms`,
      ),
      r("neighbour p99, same Worker", m.nearP99, idle.nearP99, "ms", "<= 2× idle"),
      r("neighbour p99, other Worker", m.farP99, idle.farP99, "ms", "<= 2× idle"),
      r(
        "ingest p99 (a reading every 10 ms)",
        m.ingestP99,
        idle.ingestP99,
        "ms",
        "<= 2× idle",
      ),
      r(
        "CPU of the runtime's thread (it serves ingest)",
        m.mainCpuMsPerS,
        idle.mainCpuMsPerS,
        "ms/s",
        "",
        "per second of load; robust where p99 is not: other jobs on the VM do not add to it",
      ),
      r(
        "RSS growth (peak over before)",
        m.rssGrowMiB,
        idle.rssGrowMiB,
        "MiB",
        "<= 64 MiB",
        `5xx answers: ${m.fiveXX}; process ${m.alive ? "up" : "GONE"}`,
      ),
      r("data directory growth", m.dataGrowMiB, idle.dataGrowMiB, "MiB", ""),
    );
  }
  return rows;
}
