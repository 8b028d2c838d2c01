/**
 * Store-and-forward against a real Mosquitto: delivery while online (readings
 * and a module's uplink messages), retained status and last will, then one
 * long story: broker down at start, broker killed mid-stream while ingest
 * continues, edged killed with SIGKILL mid-stream and restarted. Every
 * reading that got a 202 must arrive, in order per topic; duplicates are
 * counted, not forbidden (QoS 1 is at least once).
 */
import assert from "node:assert/strict";
import { postJson, startEdged } from "../_helpers/edged.ts";
import { restartMosquitto, retained, startMosquitto, subscribe } from "../_helpers/mosquitto.ts";
import { checkOrder, ingest, metric, mqttEnv, valuesByTopic } from "./_mqtt.ts";

const RELAY = new URL("../../examples/modules/relay-wat", import.meta.url).pathname;

async function waitUntil(pred: () => Promise<boolean> | boolean, ms: number, what: string) {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test("mqtt: readings and module messages go up online; status retained; last will on kill -9", async () => {
  const broker = await startMosquitto();
  const sub = await subscribe(broker, "edged/dev1/#");
  const edged = await startEdged({
    env: mqttEnv(broker.url, { EDGED_MODULES_PRELOAD: RELAY }),
  });
  try {
    const readings = [
      ...Array.from({ length: 30 }, (_, i) => ({ device_id: "d1", metric: "a", value: i })),
      ...Array.from(
        { length: 5 },
        (_, i) => ({ device_id: "d1", metric: "relay", value: 100 + i }),
      ),
    ];
    const res = await postJson(edged, readings);
    assert.deepEqual(res.status, 202);
    await res.body?.cancel();
    const up = (t: string) => sub.messages.filter((m) => m.topic === t);
    await sub.waitFor(
      () =>
        up("edged/dev1/up/sensors/d1/a").length >= 30 &&
        up("edged/dev1/up/telemetry/relay").length >= 5,
      15000,
      "readings and relay messages",
    );
    const a = up("edged/dev1/up/sensors/d1/a").map((m) => JSON.parse(m.payload!));
    assert.deepEqual(a.map((r) => r.value), Array.from({ length: 30 }, (_, i) => i));
    assert(a.every((r) => r.device_id === "d1" && r.metric === "a" && typeof r.id === "number"));
    assert(up("edged/dev1/up/sensors/d1/a").every((m) => m.qos === 1));
    const relayed = up("edged/dev1/up/telemetry/relay").map((m) => JSON.parse(m.payload!).value);
    assert.deepEqual(relayed, [100, 101, 102, 103, 104]);

    const online = JSON.parse((await retained(broker, "edged/dev1/status"))!);
    assert.deepEqual(online.state, "online");
    assert.deepEqual(online.device_id, "dev1");
    assert.deepEqual(typeof online.version, "string");
    assert("slot" in online && typeof online.uptime_s === "number");

    assert.deepEqual(await metric(edged, "edged_mqtt_connected"), 1);
    await waitUntil(
      async () => (await metric(edged, 'edged_mqtt_outbox_messages{stream="readings"}')) === 0,
      5000,
      "readings outbox drained",
    );
    assert((await metric(edged, "edged_mqtt_acked_total"))! >= 35);

    // kill -9: no DISCONNECT, so the broker publishes the will (retained).
    await edged.stop("SIGKILL");
    await waitUntil(
      async () =>
        JSON.parse((await retained(broker, "edged/dev1/status")) ?? "{}").state === "offline",
      10000,
      "retained offline status from the last will",
    );
  } finally {
    await edged.stop("SIGKILL");
    await sub.stop();
    await broker.stop();
  }
});

Deno.test("mqtt: a graceful stop leaves the status retained offline", async () => {
  const broker = await startMosquitto();
  const edged = await startEdged({ env: mqttEnv(broker.url) });
  try {
    await waitUntil(
      async () =>
        JSON.parse((await retained(broker, "edged/dev1/status")) ?? "{}").state === "online",
      10000,
      "online status",
    );
    assert.deepEqual(await edged.stop("SIGTERM"), 0);
    const off = JSON.parse((await retained(broker, "edged/dev1/status"))!);
    assert.deepEqual(off.state, "offline");
  } finally {
    await edged.stop("SIGKILL");
    await broker.stop();
  }
});

Deno.test("mqtt: every acknowledged reading arrives in order across broker outages and kill -9", async (t) => {
  // Broker persistence plus a persistent-session subscriber, so messages the
  // broker accepted while the observer reconnects are not lost to the test.
  let broker = await startMosquitto({ persistence: true });
  const sub = await subscribe(broker, "edged/dev1/up/#", { sessionId: "observer" });
  const acked = new Set<number>();
  let seq = 0;
  await broker.stop("SIGTERM");
  let edged = await startEdged({ env: mqttEnv(broker.url) });
  const dataDir = edged.dataDir;
  try {
    await t.step("broker down at start: ingest still answers 202", async () => {
      seq = await ingest(edged, seq, 20, 50, acked);
      assert.deepEqual(await metric(edged, "edged_mqtt_connected"), 0);
      assert.deepEqual(await metric(edged, 'edged_mqtt_outbox_messages{stream="readings"}'), seq);
    });

    await t.step("broker comes up: the backlog is replayed", async () => {
      broker = await restartMosquitto(broker);
      await sub.waitFor(
        () => checkOrder(valuesByTopic(sub.messages, "edged/dev1/up/")).distinct.size >= seq,
        20000,
        "backlog",
      );
      assert((await metric(edged, "edged_mqtt_replay_messages_per_second"))! >= 0);
    });

    await t.step("broker killed mid-stream, ingest continues", async () => {
      const ingesting = ingest(edged, seq, 100, 50, acked);
      await new Promise((r) => setTimeout(r, 150));
      await broker.stop("SIGTERM");
      assert(acked.size < seq + 100 * 50, "the broker went away mid-stream");
      seq = await ingesting;
      seq = await ingest(edged, seq, 10, 50, acked);
      broker = await restartMosquitto(broker);
    });

    await t.step("edged killed with SIGKILL mid-stream, restarted on the same data", async () => {
      const before = acked.size;
      const ingesting = ingest(edged, seq, 1000, 50, acked);
      await new Promise((r) => setTimeout(r, 300));
      await edged.stop("SIGKILL");
      seq = await ingesting;
      assert(acked.size > before && acked.size < before + 1000 * 50, "killed mid-stream");
      edged = await startEdged({ dataDir, env: mqttEnv(broker.url) });
      seq = await ingest(edged, seq, 10, 50, acked);
    });

    await t.step("all acknowledged readings arrived, order per topic kept", async () => {
      let result = checkOrder(valuesByTopic(sub.messages, "edged/dev1/up/"));
      await sub.waitFor(
        () => {
          result = checkOrder(valuesByTopic(sub.messages, "edged/dev1/up/"));
          return [...acked].every((v) => result.distinct.has(v));
        },
        30000,
        "every acknowledged reading",
      ).catch(async (err) => {
        const missing = [...acked].filter((v) => !result.distinct.has(v)).sort((a, b) => a - b);
        console.log("missing", missing.length, missing.slice(0, 20), missing.slice(-5));
        console.log(
          await (await fetch(edged.url + "/metrics")).text().then((t) =>
            t.split("\n").filter((l) =>
              l.startsWith("edged_mqtt") || l.startsWith("edged_readings")
            ).join("\n")
          ),
        );
        throw err;
      });
      const missing = [...acked].filter((v) => !result.distinct.has(v));
      assert.deepEqual(missing, []);
      console.log(
        `acknowledged ${acked.size}, received ${result.distinct.size} distinct, ${result.duplicates} duplicates`,
      );
      await waitUntil(
        async () => (await metric(edged, 'edged_mqtt_outbox_messages{stream="readings"}')) === 0,
        10000,
        "outbox drained",
      );
    });
  } finally {
    await edged.stop("SIGKILL");
    await sub.stop();
    await broker.stop("SIGKILL");
  }
});

Deno.test("mqtt: module messages committed to the outbox survive kill -9 and go up after restart", async () => {
  let broker = await startMosquitto({ persistence: true });
  const sub = await subscribe(broker, "edged/dev1/up/telemetry/#", { sessionId: "relay-observer" });
  await broker.stop("SIGTERM");
  const env = mqttEnv(broker.url, { EDGED_MODULES_PRELOAD: RELAY });
  let edged = await startEdged({ env });
  const dataDir = edged.dataDir;
  try {
    const res = await postJson(
      edged,
      Array.from({ length: 20 }, (_, i) => ({ device_id: "d1", metric: "relay", value: i })),
    );
    assert.equal(res.status, 202);
    await res.body?.cancel();
    await waitUntil(
      async () => (await metric(edged, 'edged_mqtt_outbox_messages{stream="messages"}')) === 20,
      10000,
      "20 module messages in the outbox",
    );
    await edged.stop("SIGKILL");
    edged = await startEdged({ dataDir, env });
    broker = await restartMosquitto(broker);
    await sub.waitFor(
      (m) => new Set(m.map((x) => JSON.parse(x.payload!).value)).size >= 20,
      15000,
      "relayed",
    );
    const values = sub.messages.map((x) => JSON.parse(x.payload!).value);
    const firsts = values.filter((v, i) => values.indexOf(v) === i);
    assert.deepEqual(firsts, Array.from({ length: 20 }, (_, i) => i));
  } finally {
    await edged.stop("SIGKILL");
    await sub.stop();
    await broker.stop("SIGKILL");
  }
});
