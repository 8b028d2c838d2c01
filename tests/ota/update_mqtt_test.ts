/**
 * The update pipeline over MQTT with a real Mosquitto: `module-deploy`
 * installs a module published in the repository (verified TUF target, hot
 * swap in the sandbox), `update-check` with `apply` updates the device
 * (boot confirmation then needs the broker connection), and the retained
 * status names the new version and slot. A release whose bytes do not match
 * the signed metadata answers `update_verification_failed` (target and both
 * digests in the message), a refused download `update_download_failed`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { serveRepo } from "./_repo_server.ts";
import { pub, retained, startMosquitto, subscribe } from "../_helpers/mosquitto.ts";
import { Device, freePort, publishRelease, repoCli, sha256Of } from "./_update_helpers.ts";

const RELAY = new URL("../../examples/modules/relay-wat/", import.meta.url).pathname;

Deno.test({
  name: "update over MQTT: module-deploy and update-check with apply; status names the slot",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "edged-update-mqtt-" });
    const repo = join(dir, "repo");
    const rel = (v: string) => join(dir, `edged-${v}`);
    await repoCli("init", repo);
    for (const [v, seed] of [["1.0.0", 1], ["2.0.0", 2]] as const) {
      await publishRelease(repo, rel(v), v, { seed });
    }
    await repoCli(
      "add",
      repo,
      "--module",
      join(RELAY, "module.wasm"),
      "--manifest",
      join(RELAY, "manifest.json"),
    );
    const server = serveRepo(repo);
    const broker = await startMosquitto();
    const results = await subscribe(broker, "edged/mqtt-dev/cmd/+/result");
    const device = new Device(rel("1.0.0"), join(dir, "data"), freePort(), {
      EDGED_DEVICE_ID: "mqtt-dev",
      EDGED_MQTT_URL: broker.url,
      EDGED_MQTT_RECONNECT_MIN_MS: "100",
      EDGED_MQTT_RECONNECT_MAX_MS: "400",
      EDGED_UPDATE_URL: server.url,
      EDGED_UPDATE_RETRIES: "0",
      EDGED_UPDATE_ROOT: join(repo, "metadata", "1.root.json"),
      EDGED_UPDATE_AUTO_APPLY: "false",
      // update-check with apply: allowed by the operator (docs/operators.md, "Trust").
      EDGED_MQTT_COMMANDS_ALLOW_APPLY: "true",
      EDGED_UPDATE_BOOT_DEADLINE_S: "20",
    }).start();
    const call = async (command: string, body: Record<string, unknown>) => {
      const before = results.messages.length;
      await pub(broker, `edged/mqtt-dev/cmd/${command}`, JSON.stringify(body));
      await results.waitFor(
        (m) => m.slice(before).some((x) => JSON.parse(x.payload!).id === body.id),
        60000,
        `result of ${command}`,
      );
      return JSON.parse(
        results.messages.slice(before).find((x) => JSON.parse(x.payload!).id === body.id)!.payload!,
      );
    };
    try {
      await device.status();
      // The command subscription is in place once a ping is answered.
      for (let i = 0; i < 100; i++) {
        await pub(broker, "edged/mqtt-dev/cmd/ping", JSON.stringify({ id: `warm-${i}` }));
        await new Promise((r) => setTimeout(r, 100));
        if (results.messages.length > 0) break;
      }

      const deployed = await call("module-deploy", { id: "d1", name: "relay" });
      assert.equal(deployed.ok, true, JSON.stringify(deployed));
      assert.deepEqual(deployed.result, { name: "relay", version: "1.0.0" });
      assert.equal((await device.api("/api/v1/modules/relay")).status, 200);

      const missing = await call("module-deploy", { id: "d2", name: "no-such-module" });
      assert.equal(missing.ok, false);
      assert.equal(missing.error.code, "target_not_found");
      const bad = await call("module-deploy", { id: "d3" });
      assert.equal(bad.error.code, "invalid_params");

      server.mode.corruptTargets = true;
      const corrupt = await call("update-check", { id: "c0", apply: true });
      server.mode.corruptTargets = false;
      assert.equal(corrupt.ok, false);
      assert.equal(corrupt.error.code, "update_verification_failed", JSON.stringify(corrupt));
      // Both digests: the signed one, and the one of what arrived (first byte changed).
      const release = await sha256Of(rel("2.0.0"));
      const sent = await Deno.readFile(rel("2.0.0"));
      sent[0] ^= 0xff;
      await Deno.writeFile(join(dir, "sent"), sent);
      const arrived = await sha256Of(join(dir, "sent"));
      assert.match(
        corrupt.error.message,
        new RegExp(`releases/.*/2\\.0\\.0/edged: .*${arrived}.*${release}`),
      );
      // The same fields as the HTTP answer.
      assert.equal(corrupt.error.expected.sha256, release);
      assert.equal(corrupt.error.actual.sha256, arrived);
      server.mode.targetStatus = 503;
      const refused = await call("update-check", { id: "c00", apply: true });
      server.mode.targetStatus = null;
      assert.equal(refused.error.code, "update_download_failed", JSON.stringify(refused));
      assert.equal((await device.state()).active, "a", "nothing was installed");

      const checked = await call("update-check", { id: "c1", apply: true });
      assert.equal(checked.ok, true, JSON.stringify(checked));
      assert.equal(checked.result.available.version, "2.0.0");
      assert.equal(checked.result.apply.method, "delta");
      const s = await device.waitStatus(
        "2.0.0 confirmed with the broker connected",
        (s) => s.current.version === "2.0.0" && s.trial === null,
      );
      assert.equal(s.active, "b");
      await waitForRetained(broker, (st) => st.version === "2.0.0" && st.slot === "b");
      assert.ok(device.messages().some((m) => m.includes("confirmed 2.0.0")));
    } finally {
      await device.killAll().catch(() => {});
      await results.stop();
      await broker.stop();
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

async function waitForRetained(
  broker: { port: number },
  pred: (status: Record<string, unknown>) => boolean,
): Promise<void> {
  const deadline = Date.now() + 20000;
  let last: string | null = null;
  while (Date.now() < deadline) {
    last = await retained(broker, "edged/mqtt-dev/status");
    if (last && pred(JSON.parse(last))) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`retained status never matched; last: ${last}`);
}
