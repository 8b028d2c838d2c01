/**
 * Connecting: MQTT 3.1.1 as well as 5, username/password against a broker
 * with a password file, and reconnect back-off that never spins while the
 * broker is away.
 */
import assert from "node:assert/strict";
import { postJson, startEdged } from "../_helpers/edged.ts";
import { freePort, retained, startMosquitto, subscribe } from "../_helpers/mosquitto.ts";
import { metric, mqttEnv } from "./_mqtt.ts";

async function waitFor(pred: () => Promise<boolean>, what: string, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test("mqtt: MQTT 3.1.1 delivers and leaves a last will", async () => {
  const broker = await startMosquitto();
  const sub = await subscribe(broker, "edged/dev1/up/#");
  const edged = await startEdged({ env: mqttEnv(broker.url, { EDGED_MQTT_PROTOCOL: "3.1.1" }) });
  try {
    const res = await postJson(
      edged,
      [1, 2, 3].map((v) => ({ device_id: "d1", metric: "v3", value: v })),
    );
    assert.equal(res.status, 202);
    await res.body?.cancel();
    await sub.waitFor((m) => m.length >= 3, 10000, "three readings");
    assert.deepEqual(sub.messages.map((m) => JSON.parse(m.payload!).value), [1, 2, 3]);
    await edged.stop("SIGKILL");
    await waitFor(
      async () =>
        JSON.parse((await retained(broker, "edged/dev1/status")) ?? "{}").state === "offline",
      "the will",
    );
  } finally {
    await edged.stop("SIGKILL");
    await sub.stop();
    await broker.stop();
  }
});

Deno.test("mqtt: username and password; a wrong password never connects", async () => {
  const dir = await Deno.makeTempDir({ prefix: "edged-mosq-auth-" });
  await Deno.chmod(dir, 0o755);
  const pw = await new Deno.Command("mosquitto_passwd", {
    args: ["-b", "-c", `${dir}/passwd`, "device", "s3cret-pass"],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(pw.code, 0, new TextDecoder().decode(pw.stderr));
  await Deno.chmod(`${dir}/passwd`, 0o644);
  // The helper writes `allow_anonymous true` first; the later line wins.
  const secured = await startMosquitto({
    extra: [`password_file ${dir}/passwd`, "allow_anonymous false"],
  });
  const good = await startEdged({
    env: mqttEnv(secured.url, {
      EDGED_MQTT_USERNAME: "device",
      EDGED_MQTT_PASSWORD: "s3cret-pass",
    }),
  });
  const bad = await startEdged({
    env: mqttEnv(secured.url, { EDGED_MQTT_USERNAME: "device", EDGED_MQTT_PASSWORD: "wrong" }),
  });
  try {
    await waitFor(
      async () => (await metric(good, "edged_mqtt_connected")) === 1,
      "authenticated connection",
    );
    await waitFor(
      async () => ((await metric(bad, "edged_mqtt_connect_failures_total")) ?? 0) >= 2,
      "refused attempts",
    );
    assert.equal(await metric(bad, "edged_mqtt_connects_total"), 0);
  } finally {
    await good.stop();
    await bad.stop();
    await secured.stop();
  }
});

Deno.test("mqtt: with the broker away, reconnects back off and never spin", async () => {
  const edged = await startEdged({
    env: mqttEnv(`mqtt://127.0.0.1:${freePort()}`, {
      EDGED_MQTT_RECONNECT_MIN_MS: "50",
      EDGED_MQTT_RECONNECT_MAX_MS: "400",
    }),
  });
  try {
    const first = (await metric(edged, "edged_mqtt_connect_failures_total"))!;
    await new Promise((r) => setTimeout(r, 2000));
    const failures = (await metric(edged, "edged_mqtt_connect_failures_total"))! - first;
    // With delays of at least 200 ms once backed off, 2 s hold at most a
    // handful of attempts; a spinning loop would make thousands.
    assert.ok(failures >= 2 && failures <= 20, `attempts in 2 s: ${failures}`);
    const res = await postJson(edged, { device_id: "d1", metric: "m", value: 1 });
    assert.equal(res.status, 202);
    await res.body?.cancel();
  } finally {
    await edged.stop();
  }
});
