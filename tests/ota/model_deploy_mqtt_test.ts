/**
 * `model-deploy` end to end through a real Mosquitto (its own
 * `mosquitto_pub`/`mosquitto_sub` clients): a real edged process, a TUF
 * repository holding the example module's model (`edged repo add --model`),
 * the command off when `mqtt.commands.allow` does not list it, then on (its
 * default); the model listed by `GET /api/v1/models` and scoring readings in
 * the example C module; a tampered model target refused with
 * `update_verification_failed` while the old model keeps serving; the
 * untampered next version then deployed by its delta.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { windowScorer } from "../../scripts/nn/models.ts";
import { type EdgedProcess, postJson, startEdged } from "../_helpers/edged.ts";
import { pub, startMosquitto, subscribe } from "../_helpers/mosquitto.ts";
import { serveRepo } from "./_repo_server.ts";
import { repoCli, sha256Of } from "./_update_helpers.ts";

const EXAMPLE = new URL("../../examples/modules/anomaly-score-c/", import.meta.url).pathname;
const PREFIX = "edged/model-dev";
/** The example's score of 20 steady readings and a spike of +28: RMS of 15 differences. */
const SPIKE_SCORE = 28 / Math.sqrt(15);

Deno.test({
  name:
    "model-deploy over MQTT: off unless allowed, then installs and serves; a tampered target is refused and the old model keeps serving",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "edged-model-mqtt-" });
    const repo = join(dir, "repo");
    const dataDir = join(dir, "data");
    await Deno.mkdir(dataDir);
    const v1 = join(EXAMPLE, "window-scorer.onnx");
    const v2 = join(dir, "window-scorer-2.onnx");
    // 1.1.0 doubles the score: the same interface, other outputs.
    await Deno.writeFile(v2, windowScorer(16, 2).bytes);
    await repoCli("init", repo);
    await repoCli("add", repo, "--model", v1, "--name", "window-scorer", "--version", "1.0.0");

    const server = serveRepo(repo);
    const broker = await startMosquitto();
    const results = await subscribe(broker, `${PREFIX}/cmd/+/result`);
    const env = (extra: Record<string, string> = {}) => ({
      EDGED_DEVICE_ID: "model-dev",
      EDGED_MQTT_URL: broker.url,
      EDGED_MQTT_RECONNECT_MIN_MS: "100",
      EDGED_MQTT_RECONNECT_MAX_MS: "400",
      EDGED_UPDATE_URL: server.url,
      EDGED_UPDATE_RETRIES: "0",
      EDGED_UPDATE_ROOT: join(repo, "metadata", "1.root.json"),
      EDGED_UPDATE_AUTO_APPLY: "false",
      ...extra,
    });
    let n = 0;
    /** Publishes a command, resolves with its answer on PREFIX/cmd/{command}/result. */
    const call = async (command: string, body: Record<string, unknown>) => {
      const id = `${command}-${n++}`;
      const mine = (x: { topic: string; payload: string | null }) =>
        x.topic === `${PREFIX}/cmd/${command}/result` && JSON.parse(x.payload!).id === id;
      await pub(broker, `${PREFIX}/cmd/${command}`, JSON.stringify({ ...body, id }));
      await results.waitFor((m) => m.some(mine), 60_000, `the answer to ${command} ${id}`);
      return JSON.parse(results.messages.find(mine)!.payload!);
    };
    /** Waits until the device answers commands (its subscription is in place). */
    const connected = async () => {
      for (let i = 0;; i++) {
        const before = results.messages.length;
        await pub(broker, `${PREFIX}/cmd/ping`, JSON.stringify({ id: `warm-${i}` }));
        await new Promise((r) => setTimeout(r, 100));
        if (results.messages.length > before) return;
        if (i > 150) throw new Error("the device never answered ping");
      }
    };
    const models = async (p: EdgedProcess) => (await (await p.api("/api/v1/models")).json());

    let p: EdgedProcess | undefined;
    try {
      // 1. Off: this device's mqtt.commands.allow does not list model-deploy.
      p = await startEdged({ dataDir, env: env({ EDGED_MQTT_COMMANDS_ALLOW: "ping" }) });
      await connected();
      const off = await call("model-deploy", { name: "window-scorer" });
      assert.equal(off.ok, false);
      assert.equal(off.error.code, "command_not_allowed", JSON.stringify(off));
      assert.equal((await models(p)).models.length, 0, "nothing installed");
      assert.equal(await p.stop(), 0);
      p = undefined;

      // 2. On (the default allow-list has it): installed, listed, used by a module.
      p = await startEdged({ dataDir, env: env() });
      await connected();
      const missing = await call("model-deploy", { name: "no-such-model" });
      assert.equal(missing.error?.code, "target_not_found", JSON.stringify(missing));
      const first = await call("model-deploy", { name: "window-scorer" });
      assert.equal(first.ok, true, JSON.stringify(first));
      assert.deepEqual(first.result, { name: "window-scorer", version: "1.0.0", method: "full" });
      let list = await models(p);
      assert.equal(list.models.length, 1);
      assert.equal(list.models[0].name, "window-scorer");
      assert.equal(list.models[0].version, "1.0.0");
      assert.equal(list.models[0].sha256, await sha256Of(v1));

      const form = new FormData();
      form.set("manifest", await Deno.readTextFile(join(EXAMPLE, "manifest.json")));
      form.set("module", new File([await Deno.readFile(join(EXAMPLE, "module.wasm"))], "m.wasm"));
      const put = await p.api("/api/v1/modules/anomaly-score", { method: "PUT", body: form });
      assert.equal(put.status, 201, await put.text());
      assert.ok(Math.abs((await spike(p)) - SPIKE_SCORE) < 1e-3, "1.0.0 scores the spike");
      list = await models(p);
      assert.deepEqual(list.models[0].used_by, ["anomaly-score"]);
      assert.equal(list.models[0].loaded, true);

      // 3. 1.1.0 published; every target byte stream tampered on its way: refused.
      const out = await repoCli(
        "add",
        repo,
        "--model",
        v2,
        "--name",
        "window-scorer",
        "--version",
        "1.1.0",
      );
      assert.match(out, /deltas\/models\/window-scorer\/1\.0\.0_to_1\.1\.0\.bsdiff/);
      server.mode.corruptTargets = true;
      const tampered = await call("model-deploy", { name: "window-scorer" });
      server.mode.corruptTargets = false;
      assert.equal(tampered.ok, false, JSON.stringify(tampered));
      assert.equal(tampered.error.code, "update_verification_failed", JSON.stringify(tampered));
      assert.match(tampered.error.message, /models\/window-scorer\/1\.1\.0\/window-scorer\.onnx/);
      assert.equal(tampered.error.expected.sha256, await sha256Of(v2));
      list = await models(p);
      assert.equal(list.models[0].version, "1.0.0", "the old model is still installed");
      assert.equal(list.models[0].sha256, await sha256Of(v1));
      assert.ok(Math.abs((await spike(p)) - SPIKE_SCORE) < 1e-3, "1.0.0 still serves");

      // 4. Untampered, the same command takes 1.1.0 by its delta, and the module uses it.
      const next = await call("model-deploy", { name: "window-scorer" });
      assert.deepEqual(
        next.result,
        { name: "window-scorer", version: "1.1.0", method: "delta" },
        JSON.stringify(next),
      );
      assert.ok(Math.abs((await spike(p)) - 2 * SPIKE_SCORE) < 1e-3, "1.1.0 serves");
    } finally {
      if (p) await p.stop().catch(() => {});
      await results.stop();
      await broker.stop();
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * Posts 20 steady readings and a spike of +28 and returns the score of the
 * alert the example module publishes for it (the newest alert).
 */
async function spike(p: EdgedProcess): Promise<number> {
  const count = async () => (await (await p.api("/api/v1/status")).json()).alerts;
  const before = (await count()).length;
  for (const value of [...new Array(20).fill(2), 30]) {
    const res = await postJson(p, { device_id: "pump-7", metric: "vibration", value });
    assert.equal(res.status, 202);
    await res.body?.cancel();
  }
  // The readings of 2 that push an earlier spike out of the window raise alerts of their
  // own: read the newest alert only once the module has taken every reading (a loaded
  // machine's module lags behind the 202s, and its newest alert was then one of those).
  const end = Date.now() + 20_000;
  for (;;) {
    const m = await (await p.api("/api/v1/modules/anomaly-score")).json();
    if (m.delivery?.readings.lag === 0) break;
    if (Date.now() > end) throw new Error(`the module never caught up: ${JSON.stringify(m)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  for (;;) {
    const alerts = await count();
    if (alerts.length > before) {
      assert.equal(alerts[0].topic, "alerts/pump-7/vibration/anomaly");
      return alerts[0].payload.score;
    }
    if (Date.now() > end) throw new Error("no alert for the spike");
    await new Promise((r) => setTimeout(r, 100));
  }
}
