/**
 * The outbox limits end to end: refuse-new (503 with Retry-After at ingest),
 * drop-oldest (newest readings survive), age expiry; every drop counted.
 * Also: broker subscriptions feed the bus (a module relays them up).
 */
import assert from "node:assert/strict";
import { postJson, startEdged } from "../_helpers/edged.ts";
import {
  freePort,
  pub,
  restartMosquitto,
  startMosquitto,
  subscribe,
} from "../_helpers/mosquitto.ts";
import { batch, metric, mqttEnv, valuesByTopic } from "./_mqtt.ts";

const RELAY = new URL("../../examples/modules/relay-wat", import.meta.url).pathname;

async function waitMetric(
  p: Parameters<typeof metric>[0],
  sample: string,
  ok: (v: number | undefined) => boolean,
) {
  const deadline = Date.now() + 10000;
  while (!ok(await metric(p, sample))) {
    if (Date.now() > deadline) throw new Error(`${sample} = ${await metric(p, sample)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A broker that is down now but keeps a subscriber's session for when it comes up. */
async function brokerWithWaitingObserver() {
  const broker = await startMosquitto({ persistence: true });
  const sub = await subscribe(broker, "edged/dev1/up/#", { sessionId: "observer" });
  await broker.stop("SIGTERM");
  return { broker, sub };
}

Deno.test("mqtt outbox: refuse-new answers 503 with Retry-After when full, then drains", async () => {
  const { broker: down, sub } = await brokerWithWaitingObserver();
  const edged = await startEdged({
    env: mqttEnv(down.url, { EDGED_STORE_MAX_PENDING_READINGS: "100" }),
  });
  let broker = down;
  try {
    for (let i = 0; i < 10; i++) {
      const res = await postJson(edged, batch(i * 10, 10));
      assert.equal(res.status, 202);
      await res.body?.cancel();
    }
    const full = await postJson(edged, batch(100, 1));
    assert.equal(full.status, 503);
    assert.ok(Number(full.headers.get("retry-after")) > 0);
    assert.equal((await full.json()).error.code, "outbox_full");
    assert.equal(await metric(edged, 'edged_ingest_readings_total{outcome="full"}'), 1);

    broker = await restartMosquitto(down);
    await sub.waitFor(
      (m) => new Set(valuesByTopic(m, "edged/dev1/up/").values().flatMap((v) => v)).size >= 100,
      15000,
      "the 100 accepted readings",
    );
    await waitMetric(edged, 'edged_mqtt_outbox_messages{stream="readings"}', (v) => v === 0);
    const again = await postJson(edged, batch(100, 1));
    assert.equal(again.status, 202);
    await again.body?.cancel();
  } finally {
    await edged.stop();
    await sub.stop();
    await broker.stop("SIGKILL");
  }
});

Deno.test("mqtt outbox: drop-oldest keeps accepting and forwards the newest", async () => {
  const { broker: down, sub } = await brokerWithWaitingObserver();
  const edged = await startEdged({
    env: mqttEnv(down.url, {
      EDGED_STORE_MAX_PENDING_READINGS: "100",
      EDGED_MQTT_OUTBOX_POLICY: "drop-oldest",
    }),
  });
  let broker = down;
  try {
    for (let i = 0; i < 25; i++) {
      const res = await postJson(edged, batch(i * 10, 10));
      assert.equal(res.status, 202);
      await res.body?.cancel();
    }
    const dropped = (await metric(edged, 'edged_mqtt_dropped_total{reason="full"}'))!;
    assert.ok(dropped >= 150, `dropped ${dropped}`);
    const pending = (await metric(edged, 'edged_mqtt_outbox_messages{stream="readings"}'))!;
    assert.equal(pending + dropped, 250);

    broker = await restartMosquitto(down);
    await sub.waitFor(
      (m) =>
        valuesByTopic(m, "edged/dev1/up/").get("edged/dev1/up/sensors/d1/b")?.includes(249) ??
          false,
      15000,
      "the newest reading",
    );
    const got = new Set([...valuesByTopic(sub.messages, "edged/dev1/up/").values()].flat());
    assert.ok(!got.has(0), "the oldest reading was dropped");
    for (let v = 250 - pending; v < 250; v++) assert.ok(got.has(v), `reading ${v} kept`);
  } finally {
    await edged.stop();
    await sub.stop();
    await broker.stop("SIGKILL");
  }
});

Deno.test("mqtt outbox: readings older than the age limit are dropped and counted", async () => {
  const edged = await startEdged({
    env: mqttEnv(`mqtt://127.0.0.1:${freePort()}`, { EDGED_MQTT_OUTBOX_MAX_AGE_S: "1" }),
  });
  try {
    const res = await postJson(edged, batch(0, 10));
    assert.equal(res.status, 202);
    await res.body?.cancel();
    assert.equal(await metric(edged, 'edged_mqtt_outbox_messages{stream="readings"}'), 10);
    assert.ok((await metric(edged, "edged_mqtt_outbox_oldest_age_seconds"))! >= 0);
    await waitMetric(edged, 'edged_mqtt_dropped_total{reason="expired"}', (v) => v === 10);
    assert.equal(await metric(edged, 'edged_mqtt_outbox_messages{stream="readings"}'), 0);
  } finally {
    await edged.stop();
  }
});

Deno.test("mqtt: broker subscriptions feed the bus (a module relays them up)", async () => {
  const broker = await startMosquitto();
  const sub = await subscribe(broker, "edged/dev1/up/#");
  const edged = await startEdged({
    env: mqttEnv(broker.url, { EDGED_MODULES_PRELOAD: RELAY, EDGED_MQTT_SUBSCRIBE: "sensors/#" }),
  });
  try {
    const deadline = Date.now() + 10000;
    let n = 0;
    while (!sub.messages.some((m) => m.topic === "edged/dev1/up/telemetry/relay")) {
      assert.ok(Date.now() < deadline, "no relayed message");
      await pub(broker, "sensors/ext-1/relay", JSON.stringify({ local: n++ }));
      await new Promise((r) => setTimeout(r, 100));
    }
    const m = sub.messages.find((m) => m.topic === "edged/dev1/up/telemetry/relay")!;
    assert.equal(typeof JSON.parse(m.payload!).local, "number");
    assert.ok((await metric(edged, "edged_mqtt_received_total"))! >= 1);
  } finally {
    await edged.stop();
    await sub.stop();
    await broker.stop();
  }
});
