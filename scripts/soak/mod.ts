/**
 * `deno task soak --minutes N`: edged under steady load for N minutes, with
 * 32 modules, uplink to a local Mosquitto and periodic module swaps.
 * Samples RSS and latencies over time and reports the RSS drift (goal: at
 * most 5 % over an hour).
 *
 * Load: `--rate` readings per second over HTTP in batches of 4, metrics
 * `m0`..`m31`, so each of the 32 relay modules (`sensors/+/m{i}`) gets its
 * share and republishes it on `uplink/telemetry/...`; edged forwards the
 * readings and the module messages to the broker at QoS 1. A subscriber on
 * the broker measures uplink latency (broker arrival minus the send time
 * carried in the reading's value). Every `--swap-every` seconds one module
 * is replaced by a new version through `PUT /api/v1/modules/{name}`.
 *
 * RSS drift: mean RSS of the last quarter of the samples against the first
 * quarter after warm-up (the first 2 minutes, at most half of the run, at
 * least 20 % of it: V8 grows its heap for that long under load). Runs much
 * shorter than an hour show the trend, not the hour's drift.
 *
 * @module
 */
import { Command, parseCli } from "../_cli.ts";
import mqtt from "mqtt";
import { type EdgedProcess, postJson, startEdged } from "../../tests/_helpers/edged.ts";
import { type Mosquitto, startMosquitto } from "../../tests/_helpers/mosquitto.ts";

const ROOT = new URL("../../", import.meta.url);
const MODULES = 32;
const DEVICE = "soak-device";

/** One sample of the run. */
export interface SoakSample {
  /** Seconds since the load started. */
  t: number;
  rssMiB: number;
  ingestP50Ms: number;
  ingestP99Ms: number;
  uplinkP50Ms: number;
  uplinkP99Ms: number;
  /** Readings answered 202 so far. */
  acked: number;
  /** Messages the broker delivered to the subscriber so far (readings + module messages). */
  uplinked: number;
  swaps: number;
  errors: number;
}

/** The outcome of a soak run. */
export interface SoakResult {
  minutes: number;
  samples: SoakSample[];
  /** Relative RSS drift (0.05 is 5 %). */
  rssDrift: number;
  rssFirstMiB: number;
  rssLastMiB: number;
  swapP50Ms: number;
  modulesRunning: number;
}

/** Options for {@linkcode soak}. */
export interface SoakOptions {
  minutes: number;
  /** Readings per second. @default {400} */
  rate?: number;
  /** Seconds between module swaps. @default {10} */
  swapEvery?: number;
  /** Seconds between samples. @default {minutes * 60 / 24, clamped to 5..60} */
  sampleEvery?: number;
  log?: (line: string) => void;
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

async function rssOf(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

function manifest(i: number, version: string): string {
  return JSON.stringify({
    name: `soak-${String(i).padStart(2, "0")}`,
    version,
    subscribe: [`sensors/+/m${i}`],
    grants: { log: true, publish: ["uplink/telemetry/#"] },
    limits: { memory_bytes: 1 << 20, fuel_per_message: 100000 },
  });
}

async function put(edged: EdgedProcess, i: number, version: string, wasm: Uint8Array) {
  const form = new FormData();
  form.append("manifest", manifest(i, version));
  form.append("module", new File([wasm as Uint8Array<ArrayBuffer>], "module.wasm"));
  const name = `soak-${String(i).padStart(2, "0")}`;
  const res = await edged.api(`/api/v1/modules/${name}`, { method: "PUT", body: form });
  const text = await res.text();
  if (res.status !== 200 && res.status !== 201) {
    throw new Error(`PUT ${name} answered ${res.status}: ${text}`);
  }
}

/** Runs the soak and returns its samples and drift. */
export async function soak(o: SoakOptions): Promise<SoakResult> {
  const { minutes, rate = 400, swapEvery = 10 } = o;
  if (!(minutes > 0)) throw new RangeError(`minutes must be > 0, got ${minutes}`);
  const sampleEvery = o.sampleEvery ?? Math.min(60, Math.max(5, (minutes * 60) / 24));
  const log = o.log ?? (() => {});
  const wasm = await Deno.readFile(new URL("examples/modules/relay-wat/module.wasm", ROOT));
  const broker: Mosquitto = await startMosquitto();
  const edged = await startEdged({
    env: { EDGED_MQTT_URL: broker.url, EDGED_DEVICE_ID: DEVICE },
    timeoutMs: 60_000,
  });
  const sub = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clean: true });
  const uplinkMs: number[] = [];
  let uplinked = 0;
  sub.on("message", (topic, payload) => {
    uplinked++;
    if (!topic.includes("/up/sensors/")) return;
    try {
      const sent = JSON.parse(payload.toString()).value;
      if (typeof sent === "number") uplinkMs.push(Date.now() - sent);
    } catch { /* module messages may carry other payloads */ }
  });
  await sub.subscribeAsync(`edged/${DEVICE}/up/#`, { qos: 1 });

  const samples: SoakSample[] = [];
  const swapMs: number[] = [];
  let ingestMs: number[] = [];
  let acked = 0;
  let errors = 0;
  let swaps = 0;
  try {
    for (let i = 0; i < MODULES; i++) await put(edged, i, "1.0.0", wasm);
    log(`soak: ${MODULES} modules installed; ${rate} readings/s for ${minutes} min`);
    const t0 = Date.now();
    const end = t0 + minutes * 60_000;
    let seq = 0;
    // Ingest: a request of 4 readings every 4000/rate ms, each timed.
    const batch = 4;
    const interval = (1000 * batch) / rate;
    const inflight = new Set<Promise<void>>();
    const ingest = (async () => {
      let next = Date.now();
      while (Date.now() < end) {
        next += interval;
        const body = Array.from({ length: batch }, () => ({
          device_id: "pump",
          metric: `m${seq++ % MODULES}`,
          value: Date.now(),
        }));
        const started = performance.now();
        const p: Promise<void> = postJson(edged, body).then(async (res) => {
          await res.body?.cancel();
          ingestMs.push(performance.now() - started);
          if (res.status === 202) acked += batch;
          else errors++;
        }).catch(() => void errors++).finally(() => inflight.delete(p));
        inflight.add(p);
        if (inflight.size > 64) await Promise.race(inflight);
        const wait = next - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      await Promise.all(inflight);
    })();
    const swapper = (async () => {
      let v = 1;
      while (Date.now() + swapEvery * 1000 < end) {
        await new Promise((r) => setTimeout(r, swapEvery * 1000));
        const started = performance.now();
        try {
          await put(edged, swaps % MODULES, `1.0.${v++}`, wasm);
          swapMs.push(performance.now() - started);
          swaps++;
        } catch (err) {
          errors++;
          log(`swap failed: ${(err as Error).message}`);
        }
      }
    })();
    const sampler = (async () => {
      while (Date.now() < end) {
        await new Promise((r) => setTimeout(r, sampleEvery * 1000));
        const s: SoakSample = {
          t: Math.round((Date.now() - t0) / 1000),
          rssMiB: await rssOf(edged.child.pid),
          ingestP50Ms: quantile(ingestMs, 0.5),
          ingestP99Ms: quantile(ingestMs, 0.99),
          uplinkP50Ms: quantile(uplinkMs, 0.5),
          uplinkP99Ms: quantile(uplinkMs, 0.99),
          acked,
          uplinked,
          swaps,
          errors,
        };
        ingestMs = [];
        uplinkMs.length = 0;
        samples.push(s);
        log(
          `t=${s.t}s rss=${s.rssMiB.toFixed(1)} MiB ingest p50/p99=${s.ingestP50Ms.toFixed(1)}/` +
            `${s.ingestP99Ms.toFixed(1)} ms uplink p50/p99=${s.uplinkP50Ms.toFixed(0)}/` +
            `${s.uplinkP99Ms.toFixed(0)} ms acked=${acked} uplinked=${uplinked} swaps=${swaps} ` +
            `errors=${errors}`,
        );
      }
    })();
    await Promise.all([ingest, swapper, sampler]);
    const list = await (await edged.api("/api/v1/modules")).json();
    const running = (list.modules as { state: string }[]).filter((m) => m.state === "running")
      .length;
    // V8 grows its heap for the first minute or two under load: skip that.
    const warm = Math.max(
      1,
      Math.floor(samples.length * 0.2),
      Math.floor(samples.length * Math.min(0.5, 120 / (minutes * 60))),
    );
    const steady = samples.slice(warm);
    const q = Math.max(1, Math.floor(steady.length / 4));
    const mean = (xs: SoakSample[]) => xs.reduce((a, s) => a + s.rssMiB, 0) / xs.length;
    const first = mean(steady.slice(0, q));
    const last = mean(steady.slice(-q));
    return {
      minutes,
      samples,
      rssDrift: (last - first) / first,
      rssFirstMiB: first,
      rssLastMiB: last,
      swapP50Ms: quantile(swapMs, 0.5),
      modulesRunning: running,
    };
  } finally {
    await sub.endAsync().catch(() => {});
    await edged.stop();
    await broker.dispose();
    await Deno.remove(edged.dataDir, { recursive: true }).catch(() => {});
  }
}

/** The samples as a markdown table plus a summary line. */
export function renderSoak(r: SoakResult): string {
  const head = "| t (s) | RSS (MiB) | ingest p50 (ms) | ingest p99 (ms) | uplink p50 (ms) | " +
    "uplink p99 (ms) | acked | uplinked | swaps | errors |\n|" + "---:|".repeat(10) + "\n";
  const rows = r.samples.map((s) =>
    `| ${s.t} | ${s.rssMiB.toFixed(1)} | ${s.ingestP50Ms.toFixed(1)} | ${
      s.ingestP99Ms.toFixed(1)
    } | ` +
    `${s.uplinkP50Ms.toFixed(0)} | ${s.uplinkP99Ms.toFixed(0)} | ${s.acked} | ${s.uplinked} | ` +
    `${s.swaps} | ${s.errors} |`
  ).join("\n");
  return head + rows + "\n\n" +
    `RSS drift ${(r.rssDrift * 100).toFixed(1)} % (${r.rssFirstMiB.toFixed(1)} -> ` +
    `${r.rssLastMiB.toFixed(1)} MiB, goal <= 5 % over an hour), ${r.modulesRunning}/${MODULES} ` +
    `modules running at the end, swap p50 ${r.swapP50Ms.toFixed(0)} ms, ${r.minutes} min\n`;
}

if (import.meta.main) {
  const program = new Command("soak")
    .description("steady ingest, 32 modules, uplink to a local Mosquitto and module swaps")
    .option("--minutes <n>", "how long", "60")
    .option("--rate <n>", "readings per second", "400")
    .option("--swap-every <s>", "seconds between module swaps", "10")
    .option("--out <file>", "also write the report here (markdown)");
  const stop = parseCli(program, Deno.args);
  if (stop !== null) Deno.exit(stop);
  const opts = program.opts();
  const r = await soak({
    minutes: Number(opts.minutes),
    rate: Number(opts.rate),
    swapEvery: Number(opts.swapEvery),
    log: (l) => console.error(l),
  });
  const text = renderSoak(r);
  console.log(text);
  if (opts.out) await Deno.writeTextFile(opts.out, `# edged soak\n\n${text}`);
  const ok = r.modulesRunning === MODULES && r.samples.every((s) => s.errors === 0);
  Deno.exit(ok ? 0 : 1);
}
