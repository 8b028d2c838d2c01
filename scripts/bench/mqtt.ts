/**
 * MQTT uplink benchmark (issue 5), against one Mosquitto in the same run:
 *
 * 1. Live uplink: readings posted in batches while connected, counted end to
 *    end at a `mosquitto_sub` (QoS 1), next to `mosquitto_pub -q 1 --repeat`
 *    publishing the same number of 100-byte messages to the same broker.
 * 2. Replay: the broker is down for an outage (60 s, 5 s with --quick) while
 *    a 100,000-reading backlog waits on disk; then the broker comes back.
 *    Reported: edged's own replay time (CONNACK to last PUBACK, from its
 *    metrics) and the end-to-end time at a persistent-session subscriber.
 *
 * @module
 */
import type { BenchOptions, BenchRow } from "./_report.ts";
import { type EdgedProcess, postJson, startEdged } from "../../tests/_helpers/edged.ts";
import {
  type Mosquitto,
  pub,
  restartMosquitto,
  spawnSub,
  startMosquitto,
} from "../../tests/_helpers/mosquitto.ts";

const TOPIC = "bench/anchor";

/** `mosquitto_sub -C count` on `topic`; resolves when it has received them all. */
async function counter(
  broker: Mosquitto,
  topic: string,
  count: number,
  sessionId?: string,
): Promise<{ done: Promise<number>; kill: () => void }> {
  const child = spawnSub(broker, [topic], { count, sessionId });
  // Give it time to subscribe (SUBACK) before anything is published.
  await new Promise((r) => setTimeout(r, 300));
  return {
    done: child.status.then(() => performance.now()),
    kill: () => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    },
  };
}

/**
 * `mosquitto_pub -q 1 --repeat n` of one 100-byte message, counted at a
 * subscriber. In repeat mode mosquitto_pub sends the next message from its
 * PUBACK callback (one in flight); its pipelined line mode (`-l`) is not
 * usable with Debian's mosquitto 2.0.11 (the broker drops the publisher
 * "due to out of memory" after ~35,000 lines and messages are lost).
 */
async function anchorRate(broker: Mosquitto, n: number): Promise<number> {
  const sub = await counter(broker, TOPIC, n);
  const t0 = performance.now();
  await pub(broker, TOPIC, "x".repeat(100), { args: ["--repeat", String(n)] });
  const t1 = await sub.done;
  return n / ((t1 - t0) / 1000);
}

function readings(from: number, n: number) {
  return Array.from({ length: n }, (_, i) => ({
    device_id: "bench",
    metric: "temperature",
    value: from + i,
    timestamp: 1700000000000 + from + i,
  }));
}

async function post(edged: EdgedProcess, from: number, n: number): Promise<void> {
  const res = await postJson(edged, readings(from, n));
  await res.body?.cancel();
  if (res.status !== 202) throw new Error(`ingest answered ${res.status}`);
}

async function metricValue(edged: EdgedProcess, sample: string): Promise<number> {
  const text = await (await fetch(edged.url + "/metrics")).text();
  const line = text.split("\n").find((l) => l.startsWith(sample + " "));
  return line ? Number(line.slice(sample.length + 1)) : NaN;
}

function edgedEnv(url: string): Record<string, string> {
  return {
    EDGED_DEVICE_ID: "bench",
    EDGED_MQTT_URL: url,
    EDGED_MQTT_RECONNECT_MIN_MS: "100",
    EDGED_MQTT_RECONNECT_MAX_MS: "1000",
    EDGED_STORE_MAX_PENDING_READINGS: "10000000",
    EDGED_HTTP_MAX_BATCH: "5000",
    EDGED_HTTP_BODY_LIMIT_BYTES: String(8 * 1024 * 1024),
  };
}

/** Runs the mqtt section. */
export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  const n = opts.quick ? 20_000 : 100_000;
  const backlog = 100_000;
  const outageS = opts.quick ? 5 : 60;
  const rows: BenchRow[] = [];

  // 1. Live uplink next to mosquitto_pub.
  {
    const broker = await startMosquitto();
    let edged: EdgedProcess | undefined;
    try {
      edged = await startEdged({ env: edgedEnv(broker.url) });
      const anchor = await anchorRate(broker, n);
      console.error(`mqtt: mosquitto_pub ${Math.round(anchor)} msg/s`);
      const sub = await counter(broker, "edged/bench/up/#", n);
      const t0 = performance.now();
      for (let i = 0; i < n; i += 2000) await post(edged, i, Math.min(2000, n - i));

      const t1 = await sub.done;
      const live = n / ((t1 - t0) / 1000);
      console.error(`mqtt: edged live ${Math.round(live)} msg/s`);
      rows.push({
        section: "mqtt",
        metric: `live uplink QoS 1, ${n} readings end to end at a subscriber`,
        edged: live,
        anchor,
        anchorName: "mosquitto_pub -q 1 --repeat (100-byte messages, same broker)",
        unit: "msg/s",
        target: ">= 0.8x anchor",
        note:
          "edged: HTTP ingest (batches of 2000, durable) -> outbox -> broker -> subscriber; ~100-byte JSON payloads",
      });
    } finally {
      await edged?.stop();
      if (edged) await Deno.remove(edged.dataDir, { recursive: true }).catch(() => {});
      await broker.dispose();
    }
  }

  // 2. Replay after an outage, backlog on disk.
  {
    let broker = await startMosquitto({ persistence: true });
    const sub = await counter(broker, "edged/bench/up/#", backlog, `bench-${crypto.randomUUID()}`);
    await broker.stop("SIGTERM");
    let edged: EdgedProcess | undefined;
    try {
      edged = await startEdged({ env: edgedEnv(broker.url) });
      const tIngest = performance.now();
      for (let i = 0; i < backlog; i += 5000) await post(edged, i, 5000);
      console.error(`mqtt: ${backlog} readings on disk; outage of ${outageS} s`);
      const pending = await metricValue(edged, 'edged_mqtt_outbox_messages{stream="readings"}');
      if (pending !== backlog) throw new Error(`expected ${backlog} pending, got ${pending}`);
      const wait = outageS * 1000 - (performance.now() - tIngest);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const t0 = performance.now();
      broker = await restartMosquitto(broker);
      const t1 = await sub.done;
      let rate = NaN;
      const deadline = Date.now() + 30_000;
      while (!(rate > 0) && Date.now() < deadline) {
        rate = await metricValue(edged, "edged_mqtt_replay_messages_per_second");
        if (!(rate > 0)) await new Promise((r) => setTimeout(r, 100));
      }
      rows.push({
        section: "mqtt",
        metric:
          `replay of a ${backlog}-reading backlog after a ${outageS} s outage (CONNACK to last PUBACK)`,
        edged: backlog / rate,
        anchor: null,
        anchorName: "",
        unit: "s",
        target: "< 10 s",
        note: `${Math.round(rate)} msg/s; end to end at a persistent-session subscriber ${
          ((t1 - t0) / 1000).toFixed(2)
        } s from broker start (includes both reconnect back-offs)`,
      });
    } finally {
      sub.kill();
      await edged?.stop();
      if (edged) await Deno.remove(edged.dataDir, { recursive: true }).catch(() => {});
      await broker.dispose();
    }
  }
  return rows;
}
