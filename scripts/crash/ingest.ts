/**
 * Crash loop `ingest`: concurrent clients post readings (single and
 * batches) while edged, uplinking to a local Mosquitto, is killed with
 * SIGKILL at a random moment; after each kill the store must hold every
 * reading ever answered 202 (the README: "202: the reading is durable on
 * disk"), pass SQLite's integrity check, and edged must start
 * again on the same data directory. At the end every acknowledged reading
 * must have reached the broker at least once (store-and-forward across the
 * kills: "never loses an acknowledged reading").
 *
 * @module
 */
import mqtt from "mqtt";
import { postJson, startEdged } from "../../tests/_helpers/edged.ts";
import { startMosquitto } from "../../tests/_helpers/mosquitto.ts";
import { Rng } from "../fuzz/_prng.ts";
import {
  type CrashOptions,
  type CrashReport,
  integrityCheck,
  kill9,
  sleep,
  storedKeys,
} from "./_common.ts";

/** Runs the ingest crash loop. */
export async function ingestCrash(opts: CrashOptions): Promise<CrashReport> {
  const rng = new Rng(opts.seed, 1);
  const dataDir = await Deno.makeTempDir({ prefix: "edged-crash-ingest-" });
  const acked = new Set<string>();
  const report: CrashReport = {
    scenario: "ingest",
    trials: 0,
    violations: [],
    stats: { acked: 0, requests: 0, refused_connections: 0, uplinked: 0 },
    notes: [],
  };
  const broker = await startMosquitto();
  const sub = await mqtt.connectAsync(broker.url, { protocolVersion: 5 });
  const uplinked = new Set<string>();
  sub.on("message", (_topic, payload) => {
    try {
      const r = JSON.parse(payload.toString());
      if (r.metric === "seq") uplinked.add(`${r.device_id}:${r.value}`);
    } catch { /* not a reading */ }
  });
  await sub.subscribeAsync("edged/crash/up/sensors/#", { qos: 1 });
  const env = { EDGED_MQTT_URL: broker.url, EDGED_DEVICE_ID: "crash" };
  try {
    for (let trial = 1; trial <= opts.trials; trial++) {
      const edged = await startEdged({ dataDir, env });
      let stopped = false;
      const workers = Array.from({ length: 8 }, async (_, w) => {
        let seq = 0;
        while (!stopped) {
          const n = rng.chance(0.5) ? 1 : rng.int(2, 50);
          const batch = Array.from({ length: n }, () => ({
            device_id: `t${trial}w${w}`,
            metric: "seq",
            value: seq++,
          }));
          const keys = batch.map((r) => `${r.device_id}:${r.value}`);
          try {
            report.stats.requests++;
            const res = await postJson(edged, n === 1 ? batch[0] : batch);
            await res.body?.cancel();
            if (res.status === 202) { for (const k of keys) acked.add(k); }
          } catch {
            report.stats.refused_connections++;
            return; // the process is gone
          }
        }
      });
      const at = rng.int(20, 1500);
      await sleep(at);
      await kill9(edged);
      stopped = true;
      await Promise.all(workers);
      const stored = storedKeys(dataDir);
      // Uplinked readings beyond [store] retain_uplinked are pruned by design:
      // a reading is safe when it is on disk or already at the broker.
      const lost = [...acked].filter((k) => !stored.has(k) && !uplinked.has(k));
      if (lost.length > 0) {
        report.violations.push(
          `trial ${trial} (kill at ${at} ms): ${lost.length} acknowledged readings lost, e.g. ${
            lost.slice(0, 3).join(", ")
          }`,
        );
      }
      const integrity = integrityCheck(dataDir);
      if (integrity !== "ok") {
        report.violations.push(`trial ${trial}: integrity_check ${integrity}`);
      }
      report.trials++;
      opts.log?.(
        `ingest trial ${trial}: kill at ${at} ms, ${acked.size} acknowledged so far, ` +
          `${lost.length} lost`,
      );
    }
    // The directory must start once more after the last kill, and forward the backlog.
    const last = await startEdged({ dataDir, env });
    const res = await postJson(last, { device_id: "after", value: 1 });
    await res.body?.cancel();
    if (res.status !== 202) {
      report.violations.push(`restart after the last kill answered ${res.status}`);
    }
    const deadline = Date.now() + 60_000;
    while ([...acked].some((k) => !uplinked.has(k)) && Date.now() < deadline) await sleep(200);
    const missing = [...acked].filter((k) => !uplinked.has(k));
    if (missing.length > 0) {
      report.violations.push(
        `${missing.length} acknowledged readings never reached the broker within 60 s after the ` +
          `last restart, e.g. ${missing.slice(0, 3).join(", ")}`,
      );
    }
    await last.stop();
    report.stats.acked = acked.size;
    report.stats.uplinked = acked.size - missing.length;
  } finally {
    await sub.endAsync().catch(() => {});
    await broker.dispose();
  }
  await Deno.remove(dataDir, { recursive: true });
  return report;
}
