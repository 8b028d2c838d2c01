/**
 * MQTT over TLS with mutual authentication: a test CA, a broker certificate
 * for 127.0.0.1 and a device certificate, all made by `openssl` here.
 */
import assert from "node:assert/strict";
import { postJson, startEdged } from "../_helpers/edged.ts";
import { startMosquitto, subscribe } from "../_helpers/mosquitto.ts";
import { metric, mqttEnv } from "./_mqtt.ts";

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" })
    .output();
  if (out.code !== 0) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A CA and two leaf certificates (EC P-256) under `dir`. */
async function makePki(dir: string, caName: string): Promise<void> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await openssl(
    dir,
    "req",
    "-x509",
    ...ec,
    "-keyout",
    `${caName}.key`,
    "-out",
    `${caName}.crt`,
    "-days",
    "2",
    "-subj",
    `/CN=${caName}`,
  );
  const leaf = async (name: string, ext: string) => {
    await openssl(
      dir,
      "req",
      ...ec,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${name}`,
    );
    await Deno.writeTextFile(`${dir}/${name}.ext`, ext);
    await openssl(
      dir,
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${caName}.crt`,
      "-CAkey",
      `${caName}.key`,
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
    );
  };
  await leaf("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  await leaf("device", "extendedKeyUsage=clientAuth\n");
}

Deno.test("mqtt: mutual TLS with a test CA; a broker signed by another CA is refused", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "edged-pki-" });
  await Deno.chmod(dir, 0o755); // mosquitto drops to its own user and must read the files
  await makePki(dir, "ca");
  await Deno.mkdir(`${dir}/other`);
  await Deno.chmod(`${dir}/other`, 0o755);
  await makePki(`${dir}/other`, "otherca");
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile) await Deno.chmod(`${dir}/${e.name}`, 0o644);
  }

  const broker = await startMosquitto({
    tls: {
      cafile: `${dir}/ca.crt`,
      certfile: `${dir}/server.crt`,
      keyfile: `${dir}/server.key`,
      requireCertificate: true,
    },
  });
  const tlsArgs = [
    "--cafile",
    `${dir}/ca.crt`,
    "--cert",
    `${dir}/device.crt`,
    "--key",
    `${dir}/device.key`,
  ];
  const sub = await subscribe(broker, "edged/dev1/up/#", { args: tlsArgs });
  try {
    await t.step("delivers over mqtts:// with a client certificate", async () => {
      const edged = await startEdged({
        env: mqttEnv(broker.url, {
          EDGED_MQTT_CA_FILE: `${dir}/ca.crt`,
          EDGED_MQTT_CERT_FILE: `${dir}/device.crt`,
          EDGED_MQTT_KEY_FILE: `${dir}/device.key`,
        }),
      });
      try {
        const res = await postJson(edged, { device_id: "d1", metric: "tls", value: 7 });
        assert.equal(res.status, 202);
        await res.body?.cancel();
        await sub.waitFor(
          (m) => m.some((x) => x.topic === "edged/dev1/up/sensors/d1/tls"),
          15000,
          "reading over TLS",
        );
        const m = sub.messages.find((x) => x.topic === "edged/dev1/up/sensors/d1/tls")!;
        assert.equal(JSON.parse(m.payload!).value, 7);
      } finally {
        await edged.stop();
      }
    });

    await t.step("a broker certificate from an unknown CA is not trusted", async () => {
      const edged = await startEdged({
        env: mqttEnv(broker.url, {
          EDGED_MQTT_CA_FILE: `${dir}/other/otherca.crt`,
          EDGED_MQTT_CERT_FILE: `${dir}/device.crt`,
          EDGED_MQTT_KEY_FILE: `${dir}/device.key`,
        }),
      });
      try {
        const deadline = Date.now() + 10000;
        while (((await metric(edged, "edged_mqtt_connect_failures_total")) ?? 0) < 2) {
          assert.ok(Date.now() < deadline, "expected failed TLS attempts");
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.equal(await metric(edged, "edged_mqtt_connected"), 0);
        assert.equal(await metric(edged, "edged_mqtt_connects_total"), 0);
      } finally {
        await edged.stop();
      }
    });

    await t.step(
      "a missing key file stops the start with a message naming the setting",
      async () => {
        await assert.rejects(
          startEdged({
            env: mqttEnv(broker.url, {
              EDGED_MQTT_CA_FILE: `${dir}/ca.crt`,
              EDGED_MQTT_CERT_FILE: `${dir}/device.crt`,
              EDGED_MQTT_KEY_FILE: `${dir}/missing.key`,
            }),
            timeoutMs: 20000,
          }),
        );
      },
    );
  } finally {
    await sub.stop();
    await broker.stop();
  }
});
