/**
 * Downlink commands against a real Mosquitto: every command round trip,
 * malformed and unknown requests, and MQTT 5 response topic with
 * correlation data.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { startEdged } from "../_helpers/edged.ts";
import { pub, startMosquitto, subscribe } from "../_helpers/mosquitto.ts";
import { mqttEnv } from "./_mqtt.ts";

const RELAY = new URL("../../examples/modules/relay-wat", import.meta.url).pathname;

Deno.test("mqtt: command round trips, errors for bad requests, MQTT 5 request/response", async (t) => {
  const broker = await startMosquitto();
  const sub = await subscribe(broker, "edged/dev1/cmd/+/result");
  const edged = await startEdged({
    env: mqttEnv(broker.url, {
      EDGED_MODULES_PRELOAD: RELAY,
      EDGED_MQTT_COMMANDS_ALLOW: "ping,update-check,module-deploy,module-remove",
    }),
  });
  let n = 0;
  const call = async (command: string, payload: string) => {
    const before = sub.messages.length;
    await pub(broker, `edged/dev1/cmd/${command}`, payload);
    await sub.waitFor((m) => m.length > before, 10000, `result of ${command}`);
    const m = sub.messages[before];
    assert.equal(m.topic, `edged/dev1/cmd/${command}/result`);
    return JSON.parse(m.payload!);
  };
  try {
    // Wait until edged has subscribed to its command topic.
    const deadline = Date.now() + 10000;
    while (sub.messages.length === 0 && Date.now() < deadline) {
      await pub(broker, "edged/dev1/cmd/ping", JSON.stringify({ id: `warmup-${n++}` }));
      await new Promise((r) => setTimeout(r, 100));
    }
    await sub.waitFor((m) => m.length > 0, 1000, "first ping");
    sub.messages.length = 0;

    await t.step("ping", async () => {
      const r = await call("ping", JSON.stringify({ id: "p-1" }));
      assert.equal(r.id, "p-1");
      assert.equal(r.ok, true);
      assert.equal(r.result.pong, true);
      assert.equal(typeof r.result.version, "string");
    });

    await t.step("numeric ids are echoed", async () => {
      const r = await call("ping", JSON.stringify({ id: 42 }));
      assert.equal(r.id, 42);
    });

    await t.step("malformed JSON gets an error result", async () => {
      const r = await call("ping", "{not json");
      assert.equal(r.ok, false);
      assert.equal(r.id, null);
      assert.equal(r.error.code, "invalid_json");
    });

    await t.step("a non-object request gets an error result", async () => {
      const r = await call("ping", "[1, 2]");
      assert.equal(r.error.code, "invalid_request");
    });

    await t.step("unknown command", async () => {
      const r = await call("reboot-now", JSON.stringify({ id: "u-1" }));
      assert.equal(r.id, "u-1");
      assert.equal(r.ok, false);
      assert.equal(r.error.code, "unknown_command");
    });

    await t.step(
      "update-check and module-deploy answer (no update server: an error result)",
      async () => {
        for (const c of ["update-check", "module-deploy"]) {
          const r = await call(c, JSON.stringify({ id: `${c}-1`, name: "relay" }));
          assert.equal(r.id, `${c}-1`);
          assert.equal(r.command, c);
          assert.equal(r.ok, false);
          assert.equal(typeof r.error.code, "string");
          assert.equal(typeof r.error.message, "string");
        }
      },
    );

    await t.step("module-remove", async () => {
      let r = await call("module-remove", JSON.stringify({ id: "m-1" }));
      assert.equal(r.error.code, "invalid_params");
      r = await call("module-remove", JSON.stringify({ id: "m-2", name: "no-such" }));
      assert.equal(r.error.code, "module_not_found");
      const before = await edged.api("/api/v1/modules/relay");
      await before.body?.cancel();
      assert.equal(before.status, 200);
      r = await call("module-remove", JSON.stringify({ id: "m-3", name: "relay" }));
      assert.deepEqual(r, {
        id: "m-3",
        command: "module-remove",
        ok: true,
        result: { removed: "relay", kept_state: true },
      });
      const after = await edged.api("/api/v1/modules/relay");
      await after.body?.cancel();
      assert.equal(after.status, 404);
    });

    await t.step("MQTT 5 response topic and correlation data", async () => {
      const client = await mqtt.connectAsync(broker.url, {
        protocolVersion: 5,
        reconnectPeriod: 0,
      });
      try {
        const got = Promise.withResolvers<{ topic: string; payload: string; corr?: string }>();
        client.on("message", (topic, payload, packet) => {
          got.resolve({
            topic,
            payload: payload.toString(),
            corr: packet.properties?.correlationData?.toString(),
          });
        });
        await client.subscribeAsync("edged/dev1/cmd/ping/result/test-client", { qos: 1 });
        await client.publishAsync("edged/dev1/cmd/ping", JSON.stringify({ id: "v5" }), {
          qos: 1,
          properties: {
            responseTopic: "edged/dev1/cmd/ping/result/test-client",
            correlationData: Buffer.from("corr-123"),
          },
        });
        const timer = setTimeout(() => got.reject(new Error("no response within 10 s")), 10000);
        const res = await got.promise.finally(() => clearTimeout(timer));
        assert.equal(res.topic, "edged/dev1/cmd/ping/result/test-client");
        assert.equal(res.corr, "corr-123");
        assert.equal(JSON.parse(res.payload).id, "v5");
      } finally {
        await client.endAsync(true);
      }
    });

    await t.step("edged survived it all", async () => {
      const r = await call("ping", JSON.stringify({ id: "still-there" }));
      assert.equal(r.ok, true);
      const text = await (await fetch(edged.url + "/metrics")).text();
      assert.match(text, /edged_mqtt_commands_total\{command="ping",outcome="ok"\} \d+/);
      assert.match(text, /edged_mqtt_commands_total\{command="unknown",outcome="error"\} 1/);
    });
  } finally {
    await edged.stop();
    await sub.stop();
    await broker.stop();
  }
});
