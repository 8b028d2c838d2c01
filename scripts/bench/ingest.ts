/**
 * Ingest benchmark (issues 2 and 12): durable `POST /api/v1/data` against a
 * bare parse-only `Deno.serve` handler, side by side in the same run; with no
 * module and with one subscribed rule module (a kv counter per reading,
 * durable subscription, effects group-committed), whose lag from a reading's
 * 202 to its committed effect is read from `edged_module_effect_lag_seconds`
 * over the whole load; for each single-reading load, the most the machine's
 * cores allow at the CPU edged and the load generator spent per request; and
 * edged's HTTP server alone under a parse-only route, which tells what the
 * server costs apart from what edged does behind it. Every
 * edged under load runs from the bundle the binary embeds. Idle memory of
 * edged (from that bundle, and from source), and of the launcher beside the
 * edged it starts, beside a bare Deno process.
 *
 * @module
 */
import type { BenchOptions, BenchRow } from "./_report.ts";
import { type LoadOptions, type LoadResult, rssMiB, runLoad, threadCpuMs } from "./_load.ts";
import { type EdgedProcess, startEdged } from "../../tests/_helpers/edged.ts";
import { parseSamples } from "../../runtime/api/status.ts";
import { sha256Hex } from "../../lib/mod.ts";
import { kvCounterWat } from "../../tests/_helpers/wat_modules.ts";
import { buildBundle } from "../bundle.ts";

const READING = { device_id: "pump-7", metric: "temperature", value: 71.5, timestamp: 1700000000 };

/** A parse-only server (the anchor, or edged's HTTP server alone) in a process of its own. */
async function startAnchor(
  script = "./_parse_only_server.ts",
): Promise<{ url: string; child: Deno.ChildProcess }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", new URL(script, import.meta.url).pathname],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  while (!/PORT \d+/.test(buf)) {
    const { value, done } = await reader.read();
    if (done) throw new Error("anchor server exited");
    buf += value;
  }
  reader.releaseLock();
  return { url: `http://127.0.0.1:${/PORT (\d+)/.exec(buf)![1]}/`, child };
}

/** Stops a server of {@linkcode startAnchor} and waits for it to exit. */
async function stopAnchor(p: { child: Deno.ChildProcess }): Promise<void> {
  try {
    p.child.kill("SIGTERM");
  } catch { /* exited */ }
  await p.child.status;
}

/**
 * Mean `fdatasync` latency of a 4 KiB append in `dir`, in ms: with group
 * commit, single-reading throughput is bounded by connections / sync latency,
 * so the row explains the ratio on this disk.
 */
async function fdatasyncMs(dir: string, n = 200): Promise<number> {
  const path = `${dir}/fsync-probe`;
  const buf = new Uint8Array(4096);
  const t0 = performance.now();
  {
    using f = await Deno.open(path, { create: true, write: true, truncate: true });
    for (let i = 0; i < n; i++) {
      await f.write(buf);
      await f.syncData();
    }
  }
  await Deno.remove(path);
  return (performance.now() - t0) / n;
}

/** The rule module: a kv counter per reading (kv_get, kv_set), as a threshold rule keeps state. */
const RULE_WAT = kvCounterWat();

async function installRule(edged: EdgedProcess): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/m.wat`, RULE_WAT);
    const out = await new Deno.Command("wat2wasm", {
      args: [`${dir}/m.wat`, "-o", `${dir}/m.wasm`],
    })
      .output();
    if (!out.success) throw new Error("wat2wasm failed");
    const wasm = await Deno.readFile(`${dir}/m.wasm`);
    const form = new FormData();
    form.append(
      "manifest",
      JSON.stringify({
        name: "rule",
        version: "1.0.0",
        sha256: await sha256Hex(wasm),
        subscribe: ["sensors/+/temperature"],
        grants: { kv: { max_bytes: 64 } },
        limits: { messages_per_second: 100_000, memory_bytes: 65536, fuel_per_message: 10_000_000 },
      }),
    );
    form.append("module", new File([wasm as Uint8Array<ArrayBuffer>], "module.wasm"));
    const res = await edged.api("/api/v1/modules/rule", { method: "PUT", body: form });
    if (res.status !== 201) throw new Error(`installing the rule module: ${await res.text()}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Cumulative effect-lag histogram buckets of module `rule` (le in seconds → count). */
async function lagBuckets(edged: EdgedProcess): Promise<Map<number, number>> {
  const text = await (await fetch(`${edged.url}/metrics`)).text();
  const out = new Map<number, number>();
  for (const s of parseSamples(text).get("edged_module_effect_lag_seconds_bucket") ?? []) {
    if (s.labels.module !== "rule") continue;
    out.set(s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), s.value);
  }
  return out;
}

/** The q-quantile (ms) of the observations between two histogram scrapes, interpolated in its bucket. */
function quantileMs(before: Map<number, number>, after: Map<number, number>, q: number): number {
  const les = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  if (total <= 0) return NaN;
  const want = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const le of les) {
    const c = (after.get(le) ?? 0) - (before.get(le) ?? 0);
    if (c >= want) {
      if (le === Infinity) return prevLe * 1000;
      const frac = c === prevCount ? 1 : (want - prevCount) / (c - prevCount);
      return (prevLe + (le - prevLe) * frac) * 1000;
    }
    prevLe = le;
    prevCount = c;
  }
  return NaN;
}

async function ruleStatus(edged: EdgedProcess) {
  return await (await edged.api("/api/v1/modules/rule")).json() as {
    messages_in: number;
    errors: number;
    dropped: { lagging: number };
    delivery: { readings: { lag: number } };
  };
}

/** The child processes of `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const text = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim();
  return text ? text.split(/\s+/).map(Number) : [];
}

/** RSS (MiB) of a process after it has idled `ms`. */
async function idleMiB(pid: number, ms = 3000): Promise<number> {
  await new Promise((r) => setTimeout(r, ms));
  return rssMiB(pid).rss;
}

async function stopAndClean(p: EdgedProcess | undefined): Promise<void> {
  if (!p) return;
  await p.stop();
  await Deno.remove(p.dataDir, { recursive: true });
}

/**
 * Idle RSS of edged without modules beside a bare Deno process (same run),
 * from the bundle `deno task compile` embeds (what a device runs; the target
 * applies to it) and from source; and of the launcher (`edged run
 * --supervise`, what deploy/edged.service runs), a process of its own beside
 * the edged it starts.
 */
async function idleRss(bundle: string): Promise<BenchRow[]> {
  const started: EdgedProcess[] = [];
  let bare: Deno.ChildProcess | undefined;
  try {
    const start = async (o: Parameters<typeof startEdged>[0]) => {
      const p = await startEdged(o);
      started.push(p);
      return p;
    };
    // The first start from new files (a device's first boot after an update)
    // and a later one. edged runs without Deno's V8 code cache (DENO_FLAGS in
    // runtime/permissions.ts), yet the first still holds more: about 9 MiB of
    // anonymous memory more on the bench VM than a later start (not traced
    // further).
    const first = await start({ bundle });
    const firstStart = await idleMiB(first.child.pid);
    await stopAndClean(started.pop());
    const edged = await start({ bundle });
    const source = await start({});
    const launcher = await start({ bundle, args: ["--supervise"] });
    const sourceLauncher = await start({ args: ["--supervise"] });
    bare = new Deno.Command(Deno.execPath(), {
      args: ["eval", "setInterval(() => {}, 1000)"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const anchor = await idleMiB(bare.pid);
    const anchorName = "bare Deno (deno eval, a timer)";
    const supervised = childrenOf(launcher.child.pid).map((pid) => rssMiB(pid).rss.toFixed(1));
    const mib = (p: EdgedProcess) => rssMiB(p.child.pid).rss;
    return [{
      section: "ingest",
      metric: "idle RSS, no module installed, from the bundle (what deno task compile embeds)",
      edged: mib(edged),
      anchor,
      anchorName,
      unit: "MiB",
      target: "<= 50 MiB",
      note: `deno run --no-config, edged's flags (no V8 code cache); its first start from a ` +
        `fresh bundle ${firstStart.toFixed(1)} MiB`,
    }, {
      section: "ingest",
      metric: "idle RSS, no module installed, from source (deno run main.ts)",
      edged: mib(source),
      anchor,
      anchorName,
      unit: "MiB",
      target: "",
      note: "what task dev runs: TypeScript, the npm resolver",
    }, {
      section: "ingest",
      metric:
        "idle RSS of the launcher (edged run --supervise) from the bundle, no module installed",
      edged: mib(launcher),
      anchor,
      anchorName,
      unit: "MiB",
      target: "",
      note: `beside its edged (${supervised.join(", ")} MiB): a device running ` +
        `deploy/edged.service holds both; from source ${mib(sourceLauncher).toFixed(1)} MiB`,
    }];
  } finally {
    if (bare) {
      bare.kill("SIGTERM");
      await bare.status;
    }
    for (const p of started) await stopAndClean(p);
  }
}

/** CPU of a process's threads while a load ran, in µs per request. */
interface LoadCpu {
  total: number;
  /** Per thread name ("deno" is the main thread, "worker-N" a Worker). */
  threads: Map<string, number>;
}

/** Runs a load against the server process `pid` and measures its threads' CPU meanwhile. */
async function loadWithCpu(
  pid: number,
  o: LoadOptions,
): Promise<{ load: LoadResult; cpu: LoadCpu }> {
  const before = threadCpuMs(pid);
  const load = await runLoad(o);
  const after = threadCpuMs(pid);
  const requests = load.requestsPerSec * o.durationS;
  const threads = new Map<string, number>();
  let total = 0;
  for (const [name, ms] of after) {
    const us = (ms - (before.get(name) ?? 0)) * 1000 / requests;
    threads.set(name, us);
    total += us;
  }
  return { load, cpu: { total, threads } };
}

/** Readable names of Deno's threads (Linux cuts thread names at 15 bytes). */
const THREAD_NAMES: Record<string, string> = {
  "deno": "main",
  "V8 DefaultWorke": "V8 GC helpers",
  "tokio-runtime-w": "blocking pool (fsync)",
};

/**
 * How much of the load's wall time the main thread was on a CPU: the share a
 * single-threaded event loop has left tells whether it, or something it waits
 * for, bounds the rate.
 */
function mainBusy(cpu: LoadCpu, load: LoadResult): string {
  // µs of CPU per request × requests per second = µs per second.
  return `${Math.round((cpu.threads.get("deno") ?? 0) * load.requestsPerSec / 1e4)} %`;
}

/** "main 21.3, worker-1 6.2, ..." for the threads that used at least 0.1 µs per request. */
function threadNote(cpu: LoadCpu): string {
  return [...cpu.threads].filter(([, us]) => us >= 0.1).sort((a, b) => b[1] - a[1])
    .map(([name, us]) => `${THREAD_NAMES[name] ?? name} ${us.toFixed(1)}`).join(", ");
}

/** Requests per second `cores` cores serve at `us` µs of CPU per request, all of them busy. */
function ceiling(us: number, cores = navigator.hardwareConcurrency): number {
  return cores * 1e6 / us;
}

/**
 * The most requests per second this machine could take at the CPU edged and
 * the load generator spent per request, were every core busy all the time:
 * however its work is spread over threads, edged cannot beat this ratio to
 * the anchor without spending less CPU per request.
 */
function ceilingRow(
  what: string,
  e: LoadResult,
  cpu: LoadCpu,
  a: LoadResult,
  aCpu: LoadCpu,
  anchorName: string,
): BenchRow {
  const cores = navigator.hardwareConcurrency;
  const client = e.clientCpuUs ?? NaN;
  const edged = ceiling(cpu.total + client);
  const anchorCeiling = ceiling(aCpu.total + (a.clientCpuUs ?? NaN));
  return {
    section: "ingest",
    metric: `${what}, CPU ceiling (every core busy at this CPU per request)`,
    edged,
    anchor: a.requestsPerSec,
    anchorName,
    unit: "req/s",
    target: "",
    note: `${cores} cores / (edged ${cpu.total.toFixed(1)} µs + load generator ` +
      `${client.toFixed(1)} µs per request); edged reached ${pct(e.requestsPerSec, edged)} ` +
      `of it, the anchor ${pct(a.requestsPerSec, anchorCeiling)} of its own ` +
      `(${Math.round(anchorCeiling).toLocaleString("en-US")} req/s)`,
  };
}

function pct(part: number, whole: number): string {
  return Number.isFinite(part / whole) ? `${Math.round(part / whole * 100)} %` : "–";
}

/** Runs the ingest section. */
export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  // One bundle, the one deno task compile embeds: every edged measured runs
  // what a device runs (but the idle row from source).
  const bundle = await Deno.makeTempDir({ prefix: "edged-bundle-" });
  try {
    await buildBundle(bundle);
    const rows = await idleRss(bundle);
    rows.push(...await loads(bundle, opts.quick ? 3 : 10));
    return rows;
  } finally {
    await Deno.remove(bundle, { recursive: true });
  }
}

/** Single readings and batches, with no module and with the rule module, beside the anchor. */
async function loads(bundle: string, durationS: number): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const env = { EDGED_STORE_MAX_PENDING_READINGS: "1000000000" };
  const started: EdgedProcess[] = [];
  let anchor: Awaited<ReturnType<typeof startAnchor>> | undefined;
  let serverOnly: Awaited<ReturnType<typeof startAnchor>> | undefined;
  try {
    const plain = await startEdged({ env, bundle });
    started.push(plain);
    const withModule = await startEdged({ env, bundle });
    started.push(withModule);
    await installRule(withModule);
    anchor = await startAnchor();
    for (const batch of [1, 100]) {
      const body = JSON.stringify(batch === 1 ? READING : Array(batch).fill(READING));
      const common = { body, durationS, connections: 64, threads: 2 };
      const label = batch === 1 ? "single readings" : `batches of ${batch}`;
      const { load: a, cpu: aCpu } = await loadWithCpu(anchor.child.pid, {
        ...common,
        url: anchor.url,
        headers: { "content-type": "application/json" },
      });
      const anchorName = `bare Deno.serve parse-only (${a.tool})`;
      if (batch === 1) {
        // What the server costs apart from what edged does behind it.
        serverOnly = await startAnchor("./_server_only.ts");
        const { load: s, cpu: sCpu } = await loadWithCpu(serverOnly.child.pid, {
          ...common,
          url: serverOnly.url,
          headers: { "content-type": "application/json" },
        });
        await stopAnchor(serverOnly);
        serverOnly = undefined;
        rows.push({
          section: "ingest",
          metric: `${label}, edged's HTTP server alone, requests/s`,
          edged: s.requestsPerSec,
          anchor: a.requestsPerSec,
          anchorName,
          unit: "req/s",
          target: "",
          note: `serveHttp with edged's connection cap and timeouts, a route that only parses ` +
            `and answers 202 (scripts/bench/_server_only.ts, from source); ` +
            `CPU per request ${sCpu.total.toFixed(1)} µs (main ${
              (sCpu.threads.get("deno") ?? 0).toFixed(1)
            }), the anchor ${aCpu.total.toFixed(1)} µs`,
        });
      }
      for (const [edged, which] of [[plain, "no module"], [withModule, "one module"]] as const) {
        const before = which === "one module" ? await lagBuckets(edged) : undefined;
        const handledBefore = which === "one module" ? (await ruleStatus(edged)).messages_in : 0;
        const { load: e, cpu } = await loadWithCpu(edged.child.pid, {
          ...common,
          url: `${edged.url}/api/v1/data`,
          headers: { "content-type": "application/json", authorization: `Bearer ${edged.token}` },
        });
        if (e.non2xx > 0) throw new Error(`edged answered ${e.non2xx} non-2xx responses`);
        rows.push(
          {
            section: "ingest",
            metric: `${label}, ${which}, requests/s`,
            edged: e.requestsPerSec,
            anchor: a.requestsPerSec,
            anchorName,
            unit: "req/s",
            target: batch === 1 && which === "one module" ? ">= 0.5× anchor" : "",
          },
          {
            section: "ingest",
            metric: `${label}, ${which}, readings/s (durable)`,
            edged: e.requestsPerSec * batch,
            anchor: a.requestsPerSec * batch,
            anchorName,
            unit: "readings/s",
            target: batch === 1 || which === "no module" ? "" : ">= 250,000 readings/s",
          },
          {
            section: "ingest",
            metric: `${label}, ${which}, p50 / p99 latency`,
            edged: e.p50Ms,
            anchor: a.p50Ms,
            anchorName,
            unit: "ms",
            target: "",
            note: `p99 ${e.p99Ms.toFixed(1)} ms (anchor ${a.p99Ms.toFixed(1)} ms)`,
          },
          {
            section: "ingest",
            metric: `${label}, ${which}, CPU per request (all threads)`,
            edged: cpu.total,
            anchor: aCpu.total,
            anchorName,
            unit: "µs",
            target: "",
            note: `by thread: ${threadNote(cpu)} (anchor: ${threadNote(aCpu)}); ` +
              `main thread busy ${mainBusy(cpu, e)} of the load ` +
              `(anchor ${mainBusy(aCpu, a)}); ` +
              `the load generator (${e.tool}) shares the machine's cores`,
          },
        );
        if (batch === 1) rows.push(ceilingRow(`${label}, ${which}`, e, cpu, a, aCpu, anchorName));
        if (!before) continue;
        // The module catches up; every reading it was sent has then had its effect committed.
        const t0 = performance.now();
        let s = await ruleStatus(edged);
        while (s.delivery.readings.lag > 0 && performance.now() - t0 < 120_000) {
          await new Promise((r) => setTimeout(r, 100));
          s = await ruleStatus(edged);
        }
        const after = await lagBuckets(edged);
        const handled = s.messages_in - handledBefore;
        rows.push({
          section: "ingest",
          metric: `${label}, module lag from 202 to committed effect, p50 / p99`,
          edged: quantileMs(before, after, 0.5),
          anchor: null,
          anchorName: "",
          unit: "ms",
          target: "",
          note: `p99 ${quantileMs(before, after, 0.99).toFixed(1)} ms over ${handled} readings; ` +
            `caught up ${((performance.now() - t0) / 1000).toFixed(1)} s after the load; ` +
            `${s.errors} faults, ${s.dropped.lagging} skipped`,
        });
      }
    }
    rows.push({
      section: "ingest",
      metric: "fdatasync of a 4 KiB append in the data directory",
      edged: await fdatasyncMs(plain.dataDir),
      anchor: null,
      anchorName: "",
      unit: "ms",
      target: "",
      note: "measured idle, one at a time; the group commit runs up to 4 at once",
    });
    rows.push({
      section: "ingest",
      metric: "peak RSS after load (one module)",
      edged: rssMiB(withModule.child.pid).peak,
      anchor: rssMiB(anchor.child.pid).peak,
      anchorName: "bare Deno.serve parse-only",
      unit: "MiB",
      target: "",
    });
  } finally {
    for (const p of [anchor, serverOnly]) if (p) await stopAnchor(p);
    for (const p of started) await stopAndClean(p);
  }
  return rows;
}
