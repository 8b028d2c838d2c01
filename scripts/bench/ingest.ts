/**
 * Ingest benchmark (issue 2): durable `POST /api/v1/data` against a bare
 * parse-only `Deno.serve` handler, side by side in the same run.
 *
 * @module
 */
import type { BenchOptions, BenchRow } from "./_report.ts";
import { rssMiB, runLoad } from "./_load.ts";
import { startEdged } from "../../tests/_helpers/edged.ts";

const READING = { device_id: "pump-7", metric: "temperature", value: 71.5, timestamp: 1700000000 };

async function startAnchor(): Promise<{ url: string; child: Deno.ChildProcess }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", new URL("./_parse_only_server.ts", import.meta.url).pathname],
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

/** Runs the ingest section. */
export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  const durationS = opts.quick ? 3 : 10;
  const rows: BenchRow[] = [];
  const edged = await startEdged({
    env: { EDGED_STORE_MAX_PENDING_READINGS: "1000000000" },
  });
  const anchor = await startAnchor();
  try {
    for (const batch of [1, 100]) {
      const body = JSON.stringify(batch === 1 ? READING : Array(batch).fill(READING));
      const common = {
        body,
        durationS,
        connections: 64,
        threads: 2,
      };
      const a = await runLoad({
        ...common,
        url: anchor.url,
        headers: { "content-type": "application/json" },
      });
      const e = await runLoad({
        ...common,
        url: `${edged.url}/api/v1/data`,
        headers: { "content-type": "application/json", authorization: `Bearer ${edged.token}` },
      });
      if (e.non2xx > 0) throw new Error(`edged answered ${e.non2xx} non-2xx responses`);
      const label = batch === 1 ? "single readings" : `batches of ${batch}`;
      const anchorName = `bare Deno.serve parse-only (${a.tool})`;
      rows.push(
        {
          section: "ingest",
          metric: `${label}, requests/s`,
          edged: e.requestsPerSec,
          anchor: a.requestsPerSec,
          anchorName,
          unit: "req/s",
          target: batch === 1 ? ">= 0.5× anchor" : "",
        },
        {
          section: "ingest",
          metric: `${label}, readings/s (durable)`,
          edged: e.requestsPerSec * batch,
          anchor: a.requestsPerSec * batch,
          anchorName,
          unit: "readings/s",
          target: batch === 1 ? "" : ">= 200,000 readings/s",
        },
        {
          section: "ingest",
          metric: `${label}, p50 latency`,
          edged: e.p50Ms,
          anchor: a.p50Ms,
          anchorName,
          unit: "ms",
          target: "",
        },
        {
          section: "ingest",
          metric: `${label}, p99 latency`,
          edged: e.p99Ms,
          anchor: a.p99Ms,
          anchorName,
          unit: "ms",
          target: "",
        },
      );
    }
    rows.push({
      section: "ingest",
      metric: "fdatasync of a 4 KiB append in the data directory",
      edged: await fdatasyncMs(edged.dataDir),
      anchor: null,
      anchorName: "",
      unit: "ms",
      target: "",
      note: "measured idle; group commit answers at most 64 connections per ~1.5 syncs",
    });
    const er = rssMiB(edged.child.pid);
    const ar = rssMiB(anchor.child.pid);
    rows.push({
      section: "ingest",
      metric: "peak RSS after load",
      edged: er.peak,
      anchor: ar.peak,
      anchorName: "bare Deno.serve parse-only",
      unit: "MiB",
      target: "",
    });
  } finally {
    anchor.child.kill("SIGTERM");
    await anchor.child.status;
    await edged.stop();
  }
  return rows;
}
