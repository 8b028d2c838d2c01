/**
 * GET /api/v1/status, the dashboard's data: behind the token, the numbers
 * Prometheus sees, no broker credentials, recent log lines.
 */
import assert from "node:assert/strict";
import { postJson, startEdged } from "../_helpers/edged.ts";
import { parseSamples } from "../../runtime/api/status.ts";

Deno.test("status: summary of the device behind the token, broker without credentials", async () => {
  const edged = await startEdged({
    env: { EDGED_DEVICE_ID: "gw-9", EDGED_MQTT_URL: "mqtt://user:s3cret@127.0.0.1:1" },
  });
  try {
    const anon = await fetch(edged.url + "/api/v1/status");
    assert.equal(anon.status, 401);
    await anon.body?.cancel();

    assert.equal((await postJson(edged, { device_id: "p", value: 1 })).status, 202);
    const res = await edged.api("/api/v1/status?logs=200");
    assert.equal(res.status, 200);
    const s = await res.json();
    assert.equal(s.device_id, "gw-9");
    assert.equal(s.ready, true);
    assert.equal(s.slot, null);
    assert.ok(s.uptime_seconds >= 0);
    assert.equal(s.mqtt.configured, true);
    assert.equal(s.mqtt.broker, "mqtt://127.0.0.1:1");
    assert.equal(s.mqtt.connected, false);
    assert.doesNotMatch(JSON.stringify(s), /s3cret/);
    assert.equal(s.outbox.readings, 1);
    assert.equal(s.store.readings_committed, 1);
    assert.ok(s.process.resident_memory_bytes > 0);
    assert.equal(s.update.phase, "idle");
    assert.deepEqual(s.modules, []);
    assert.ok(
      s.logs.some((l: { message: string }) => l.message.includes("ready (device gw-9")),
      JSON.stringify(s.logs),
    );
  } finally {
    await edged.stop();
  }
});

Deno.test("parseSamples reads the text exposition format, labels unescaped", () => {
  const s = parseSamples(
    '# HELP a_total A.\n# TYPE a_total counter\na_total 3\nb{x="1",y="q\\"z"} 2.5\nb{x="2"} 1\n',
  );
  assert.deepEqual(s.get("a_total"), [{ labels: {}, value: 3 }]);
  assert.deepEqual(s.get("b"), [
    { labels: { x: "1", y: 'q"z' }, value: 2.5 },
    { labels: { x: "2" }, value: 1 },
  ]);
});
