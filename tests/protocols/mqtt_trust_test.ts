/**
 * Issue 13, M2 replayed against a real Mosquitto and a real update
 * repository: an anonymous client of the broker sends the commands of the
 * report, and the device obeys its own policy (docs/operators.md, "Trust").
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import mqtt from "mqtt";
import { serveRepository } from "../../ota/mod.ts";
import { type EdgedProcess, startEdged } from "../_helpers/edged.ts";
import { type Mosquitto, retained, startMosquitto } from "../_helpers/mosquitto.ts";
import { repoCli } from "../ota/_update_helpers.ts";
import { mlp } from "../../scripts/nn/models.ts";
import { mqttEnv } from "./_mqtt.ts";

const EXAMPLES = new URL("../../examples/modules/", import.meta.url).pathname;
const RELAY = join(EXAMPLES, "relay-wat");
const THRESHOLD = join(EXAMPLES, "threshold-alert-c");
const PREFIX = "edged/dev1";

/** A repository holding module `relay` and model `m`, each as 1.0.0 and 1.1.0. */
async function moduleRepo(dir: string): Promise<string> {
  const repo = join(dir, "repo");
  await repoCli("init", repo);
  const manifest = JSON.parse(await Deno.readTextFile(join(RELAY, "manifest.json")));
  for (const version of ["1.0.0", "1.1.0"]) {
    const path = join(dir, `relay-${version}.json`);
    await Deno.writeTextFile(path, JSON.stringify({ ...manifest, version }));
    await repoCli("add", repo, "--module", join(RELAY, "module.wasm"), "--manifest", path);
  }
  const model = mlp([8, 16, 2], 1).bytes;
  for (const [i, version] of ["1.0.0", "1.1.0"].entries()) {
    const path = join(dir, `m-${version}.onnx`);
    const bytes = model.slice();
    bytes[Math.floor(bytes.length / 2)] ^= i; // another version, another digest
    await Deno.writeFile(path, bytes);
    await repoCli("add", repo, "--model", path, "--name", "m", "--version", version);
  }
  return repo;
}

/** A command's answer as JSON. */
// deno-lint-ignore no-explicit-any
type Answer = Record<string, any>;

/** A device on a broker and a repository, and an MQTT 5 client of that broker. */
interface Setup {
  broker: Mosquitto;
  edged: EdgedProcess;
  client: mqtt.MqttClient;
  /** Sends `command` (optionally with a Response Topic); resolves with the answer and its topic. */
  call(
    command: string,
    body: Record<string, unknown>,
    responseTopic?: string,
  ): Promise<{ topic: string; answer: Answer; correlation?: string }>;
  /** Every message the client saw, by topic. */
  seen: { topic: string; payload: string }[];
  close(): Promise<void>;
}

async function setup(env: Record<string, string>): Promise<Setup> {
  const dir = await Deno.makeTempDir({ prefix: "edged-trust-" });
  const repo = await moduleRepo(dir);
  const server = serveRepository(repo, { port: 0, onListen: () => {} });
  const broker = await startMosquitto();
  let edged: EdgedProcess | undefined;
  let client: mqtt.MqttClient | undefined;
  try {
    edged = await startEdged({
      env: mqttEnv(broker.url, {
        EDGED_UPDATE_URL: `http://127.0.0.1:${server.addr.port}/`,
        EDGED_UPDATE_ROOT: join(repo, "metadata", "1.root.json"),
        EDGED_MODULES_PRELOAD: THRESHOLD,
        ...env,
      }),
    });
    // Anonymous, as in the report: whoever the broker lets publish.
    client = await mqtt.connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0 });
    const seen: { topic: string; payload: string }[] = [];
    const answers = new Map<
      string,
      (m: { topic: string; answer: Answer; correlation?: string }) => void
    >();
    client.on("message", (topic, payload, packet) => {
      seen.push({ topic, payload: payload.toString() });
      try {
        const answer = JSON.parse(payload.toString());
        answers.get(String(answer.id))?.({
          topic,
          answer,
          correlation: packet.properties?.correlationData?.toString(),
        });
      } catch { /* not an answer */ }
    });
    await client.subscribeAsync([`${PREFIX}/cmd/+/result/#`, "pwn/#"], { qos: 1 });
    const c = client;
    const call: Setup["call"] = (command, body, responseTopic) => {
      const got = Promise.withResolvers<{ topic: string; answer: Answer; correlation?: string }>();
      answers.set(String(body.id), got.resolve);
      const timer = setTimeout(() => got.reject(new Error(`no answer to ${command}`)), 30000);
      c.publish(`${PREFIX}/cmd/${command}`, JSON.stringify(body), {
        qos: 1,
        properties: responseTopic
          ? { responseTopic, correlationData: Buffer.from(`corr-${body.id}`) }
          : undefined,
      });
      return got.promise.finally(() => clearTimeout(timer));
    };
    // The device answers once it has subscribed to its command topics.
    for (let i = 0;; i++) {
      try {
        await Promise.race([
          call("ping", { id: `warm-${i}` }),
          new Promise((_, reject) => setTimeout(() => reject(new Error("not yet")), 500)),
        ]);
        break;
      } catch (err) {
        if (i > 40) throw err;
      }
    }
    const e = edged;
    return {
      broker,
      edged: e,
      client: c,
      call,
      seen,
      async close() {
        await c.endAsync(true).catch(() => {});
        await e.stop();
        await broker.stop();
        await server.shutdown();
        await Deno.remove(dir, { recursive: true });
      },
    };
  } catch (err) {
    await client?.endAsync(true).catch(() => {});
    await edged?.stop();
    await broker.stop();
    await server.shutdown();
    throw err;
  }
}

Deno.test({
  name: "M2: by default a command cannot apply, downgrade, remove, answer off PREFIX/ or flood",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const s = await setup({
      EDGED_UPDATE_AUTO_APPLY: "false",
      EDGED_MQTT_COMMANDS_RATE_PER_MINUTE: "20",
    });
    try {
      await t.step(
        "update-check with apply is refused while update.auto_apply is off",
        async () => {
          const { answer } = await s.call("update-check", { id: "a1", apply: true });
          assert.equal(answer.ok, false);
          assert.equal(answer.error.code, "apply_not_allowed");
          const status = await (await s.edged.api("/api/v1/update")).json();
          assert.equal(status.phase, "idle");
          assert.equal(status.progress, null, "nothing was downloaded");
          const { answer: check } = await s.call("update-check", { id: "a2" });
          assert.equal(check.ok, true, JSON.stringify(check));
        },
      );

      await t.step("module-deploy installs the newest, and refuses an older version", async () => {
        const { answer } = await s.call("module-deploy", { id: "d1", name: "relay" });
        assert.deepEqual(answer.result, { name: "relay", version: "1.1.0" });
        const { answer: down } = await s.call("module-deploy", {
          id: "d2",
          name: "relay",
          version: "1.0.0",
        });
        assert.equal(down.error?.code, "downgrade_refused", JSON.stringify(down));
        const relay = await (await s.edged.api("/api/v1/modules/relay")).json();
        assert.equal(relay.version, "1.1.0");
      });

      await t.step("model-deploy installs the newest, and refuses an older version", async () => {
        const { answer } = await s.call("model-deploy", { id: "m1", name: "m" });
        assert.equal(answer.result?.version, "1.1.0", JSON.stringify(answer));
        const { answer: down } = await s.call("model-deploy", {
          id: "m2",
          name: "m",
          version: "1.0.0",
        });
        assert.equal(down.error?.code, "downgrade_refused", JSON.stringify(down));
        const m = await (await s.edged.api("/api/v1/models/m")).json();
        assert.equal(m.version, "1.1.0");
      });

      await t.step("module-remove is not allowed unless configured", async () => {
        const { answer } = await s.call("module-remove", { id: "r1", name: "relay" });
        assert.equal(answer.error?.code, "command_not_allowed");
        const res = await s.edged.api("/api/v1/modules/relay");
        await res.body?.cancel();
        assert.equal(res.status, 200);
      });

      await t.step(
        "answers stay below PREFIX/cmd/{command}/ whatever Response Topic is asked",
        async () => {
          const before = await retained(s.broker, `${PREFIX}/status`);
          assert.equal(JSON.parse(before!).state, "online");
          for (const asked of ["pwn/anything", `${PREFIX}/status`, `${PREFIX}/cmd/ping`]) {
            const r = await s.call("ping", { id: `t-${asked}` }, asked);
            assert.equal(r.topic, `${PREFIX}/cmd/ping/result`, asked);
            assert.equal(r.correlation, `corr-t-${asked}`);
          }
          const own = await s.call("ping", { id: "t-own" }, `${PREFIX}/cmd/ping/result/me`);
          assert.equal(own.topic, `${PREFIX}/cmd/ping/result/me`);
          await new Promise((r) => setTimeout(r, 500));
          assert.deepEqual(s.seen.filter((m) => m.topic.startsWith("pwn/")), []);
          const after = await retained(s.broker, `${PREFIX}/status`);
          assert.equal(
            JSON.parse(after!).state,
            "online",
            "the retained status is still the status",
          );
          const metrics = await (await fetch(s.edged.url + "/metrics")).text();
          assert.match(metrics, /^edged_mqtt_response_topics_refused_total 3$/m);
        },
      );

      await t.step(
        "300 requests in a burst: rate_per_minute run, the rest are refused",
        async () => {
          const answers = await Promise.all(
            Array.from(
              { length: 300 },
              (_, i) => s.call("module-deploy", { id: `b${i}`, name: "relay" }),
            ),
          );
          const ran = answers.filter((a) => a.answer.error?.code !== "rate_limited").length;
          // 20 a minute, 2 of them spent above; a few more may refill meanwhile.
          assert.ok(ran >= 15 && ran <= 22, `${ran} of 300 ran`);
          const r = answers.find((a) => a.answer.error?.code === "rate_limited")!;
          assert.match(r.answer.error.message, /20 requests per minute/);
        },
      );
    } finally {
      await s.close();
    }
  },
});

Deno.test({
  name: "M2: what the operator allows is allowed; module-remove keeps kv state unless asked",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const s = await setup({
      EDGED_UPDATE_AUTO_APPLY: "false",
      EDGED_MQTT_COMMANDS_ALLOW: "ping,update-check,module-deploy,model-deploy,module-remove",
      EDGED_MQTT_COMMANDS_ALLOW_APPLY: "true",
      EDGED_MQTT_COMMANDS_ALLOW_DOWNGRADE: "true",
    });
    const deliver = async (topic: string, payload: unknown) => {
      const res = await s.edged.api("/api/v1/modules/threshold-alert/messages", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ topic, payload }),
      });
      assert.equal(res.status, 200);
      return await res.json();
    };
    const reinstall = async () => {
      const form = new FormData();
      form.set("manifest", await Deno.readTextFile(join(THRESHOLD, "manifest.json")));
      form.set("module", new Blob([await Deno.readFile(join(THRESHOLD, "module.wasm"))]));
      const res = await s.edged.api("/api/v1/modules/threshold-alert", {
        method: "PUT",
        body: form,
      });
      await res.body?.cancel();
      assert.equal(res.status, 201);
    };
    try {
      await t.step("update-check may apply with mqtt.commands.allow_apply", async () => {
        const { answer } = await s.call("update-check", { id: "a1", apply: true });
        assert.equal(answer.ok, true, JSON.stringify(answer));
      });

      await t.step("deploys may downgrade with mqtt.commands.allow_downgrade", async () => {
        await s.call("module-deploy", { id: "d1", name: "relay" });
        const { answer } = await s.call("module-deploy", {
          id: "d2",
          name: "relay",
          version: "1.0.0",
        });
        assert.deepEqual(answer.result, { name: "relay", version: "1.0.0" });
        await s.call("model-deploy", { id: "m1", name: "m" });
        const { answer: model } = await s.call("model-deploy", {
          id: "m2",
          name: "m",
          version: "1.0.0",
        });
        assert.equal(model.result?.version, "1.0.0", JSON.stringify(model));
      });

      await t.step("module-remove keeps the module's kv state", async () => {
        await deliver("config/threshold-alert", 42); // the module keeps 42 in its kv
        const { answer } = await s.call("module-remove", { id: "r1", name: "threshold-alert" });
        assert.deepEqual(answer.result, { removed: "threshold-alert", kept_state: true });
        await reinstall();
        const out = await deliver("sensors/p/temperature", { value: 50 });
        assert.equal(out.published.length, 1, "50 is above the kept threshold of 42");
        assert.equal(out.published[0].payload.threshold, 42);
      });

      await t.step("... and deletes it when asked", async () => {
        const { answer } = await s.call("module-remove", {
          id: "r2",
          name: "threshold-alert",
          keep_state: false,
        });
        assert.equal(answer.result.kept_state, false);
        await reinstall();
        const out = await deliver("sensors/p/temperature", { value: 50 });
        assert.deepEqual(out.published, [], "50 is below the default threshold of 75");
      });
    } finally {
      await s.close();
    }
  },
});
