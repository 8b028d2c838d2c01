/**
 * Writes from the cloud (issue 14 item 3 under issue 13's command trust
 * model), end to end: a real edged process reads a Modbus device (pymodbus),
 * an anonymous MQTT 5 client of a real Mosquitto sends `adapter-write`, and
 * the device's registers say what happened. The command is off unless the
 * operator lists it, runs within its rate, writes only `writable` points,
 * answers only under `PREFIX/cmd/adapter-write/`, and its outcome reaches
 * modules on `devices/{adapter}/{metric}/set/result` (the relay module sends
 * it on to the broker).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { type EdgedProcess, startEdged } from "../_helpers/edged.ts";
import { type ModbusServer, startModbusServer } from "../_helpers/modbus.ts";
import { type Mosquitto, startMosquitto } from "../_helpers/mosquitto.ts";
import { tankConfig, until } from "./_modbus.ts";
import { metric, mqttEnv } from "./_mqtt.ts";

const RELAY = new URL("../../examples/modules/relay-wat/", import.meta.url).pathname;
const PREFIX = "edged/dev1";
const REQUESTS = `${PREFIX}/cmd/adapter-write`;

/** The README's tank, with a writable 16-bit signed register as well. */
const CONFIG = (url: string) =>
  tankConfig(
    url,
    `
[[adapters.modbus.points]]
metric = "setpoint"
address = 5
type = "int16"
writable = true
`,
  );

/** A command's answer as JSON. */
// deno-lint-ignore no-explicit-any
type Answer = Record<string, any>;

interface Setup {
  device: ModbusServer;
  edged: EdgedProcess;
  /** Every message the client saw. */
  seen: { topic: string; payload: string; correlation?: string }[];
  /** Sends `command` and resolves with its answer and the topic it came on. */
  call(
    command: string,
    body: Record<string, unknown>,
    responseTopic?: string,
  ): Promise<{ topic: string; answer: Answer; correlation?: string }>;
  client: mqtt.MqttClient;
  close(): Promise<void>;
}

/** Device, broker and edged (with `env`), and a client that has had a ping answered. */
async function setup(env: Record<string, string>): Promise<Setup> {
  const dir = await Deno.makeTempDir({ prefix: "edged-adapter-write-" });
  let device: ModbusServer | undefined;
  let broker: Mosquitto | undefined;
  let edged: EdgedProcess | undefined;
  let client: mqtt.MqttClient | undefined;
  const close = async () => {
    await client?.endAsync(true).catch(() => {});
    await edged?.stop();
    await broker?.stop();
    await device?.stop();
    await Deno.remove(dir, { recursive: true });
  };
  try {
    device = await startModbusServer();
    await device.set("holding", 0, [500]);
    broker = await startMosquitto();
    await Deno.writeTextFile(`${dir}/edged.toml`, CONFIG(device.url));
    edged = await startEdged({
      args: ["--config", `${dir}/edged.toml`],
      env: mqttEnv(broker.url, env),
    });
    client = await mqtt.connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0 });
    const seen: Setup["seen"] = [];
    const waiting = new Map<string, (m: { topic: string; answer: Answer }) => void>();
    client.on("message", (topic, payload, packet) => {
      const correlation = packet.properties?.correlationData?.toString();
      seen.push({ topic, payload: payload.toString(), correlation });
      if (!topic.startsWith(`${PREFIX}/cmd/`)) return;
      const answer = JSON.parse(payload.toString());
      waiting.get(String(answer.id))?.({ topic, answer, correlation } as never);
    });
    await client.subscribeAsync(
      [`${PREFIX}/cmd/+/result/#`, `${PREFIX}/up/telemetry/#`, "pwn/#", "devices/#"],
      { qos: 1 },
    );
    const c = client;
    const call: Setup["call"] = (command, body, responseTopic) => {
      const got = Promise.withResolvers<{ topic: string; answer: Answer; correlation?: string }>();
      waiting.set(String(body.id), got.resolve);
      const timer = setTimeout(() => got.reject(new Error(`no answer to ${command}`)), 20_000);
      c.publish(`${PREFIX}/cmd/${command}`, JSON.stringify(body), {
        qos: 1,
        properties: responseTopic
          ? { responseTopic, correlationData: Buffer.from(`corr-${body.id}`) }
          : undefined,
      });
      return got.promise.finally(() => {
        clearTimeout(timer);
        waiting.delete(String(body.id));
      });
    };
    // edged answers once it has subscribed to its command topics.
    await until("a ping answered", async () => {
      const id = `warm-${crypto.randomUUID()}`;
      const timeout = new Promise<null>((r) => setTimeout(() => r(null), 500));
      return await Promise.race([call("ping", { id }).catch(() => null), timeout]) !== null;
    }, 20_000);
    return { device, edged, seen, call, client, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Installs the relay module, subscribed to every write outcome (it sends each uplink). */
async function deployRelay(edged: EdgedProcess): Promise<void> {
  const manifest = JSON.parse(await Deno.readTextFile(`${RELAY}manifest.json`));
  manifest.subscribe = ["devices/+/+/set/result"];
  const fd = new FormData();
  fd.append("manifest", JSON.stringify(manifest));
  fd.append("module", new Blob([await Deno.readFile(`${RELAY}module.wasm`)]), "module.wasm");
  const res = await edged.api("/api/v1/modules/relay", { method: "PUT", body: fd });
  assert.equal(res.status, 201, await res.text());
}

Deno.test({
  name: "adapter-write: where allowed, writes a coil and a register; refuses what it must",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const s = await setup({
      EDGED_MQTT_COMMANDS_ALLOW: "ping,adapter-write",
      EDGED_MQTT_COMMANDS_RATE_PER_MINUTE: "20",
    });
    let oks = 0;
    try {
      await deployRelay(s.edged);

      await t.step("a coil is written, and the outcome reaches modules", async () => {
        assert.deepEqual(await s.device.get("coil", 0), [0]);
        const { topic, answer } = await s.call("adapter-write", {
          id: "w1",
          adapter: "tank1",
          metric: "valve",
          value: true,
        });
        oks++;
        assert.equal(topic, `${REQUESTS}/result`);
        assert.deepEqual(answer, {
          id: "w1",
          command: "adapter-write",
          ok: true,
          result: { adapter: "tank1", metric: "valve", value: true },
        });
        assert.deepEqual(await s.device.get("coil", 0), [1], "the answer came after the write");
        // The relay module got devices/tank1/valve/set/result and sent it uplink.
        await until(
          "the outcome relayed",
          () => s.seen.find((m) => m.topic === `${PREFIX}/up/telemetry/relay`),
          15_000,
        );
        const relayed = s.seen.find((m) => m.topic === `${PREFIX}/up/telemetry/relay`)!;
        assert.deepEqual(JSON.parse(relayed.payload), {
          ok: true,
          id: "w1",
          value: true,
          source: "command:adapter-write",
        });
      });

      await t.step("a holding register is written with the point's type", async () => {
        const { answer } = await s.call("adapter-write", {
          id: "w2",
          adapter: "tank1",
          metric: "setpoint",
          value: -300,
        });
        oks++;
        assert.equal(answer.ok, true, JSON.stringify(answer));
        assert.equal(await s.device.read("holding", 5, "int16"), -300);
        await until("the register read back", async () => {
          const a = await (await s.edged.api("/api/v1/adapters/tank1")).json();
          return a.points.find((p: { metric: string }) => p.metric === "setpoint").last_value ===
            -300;
        });
      });

      await t.step("a point that is not writable is refused, the device untouched", async () => {
        const { answer } = await s.call("adapter-write", {
          id: "w3",
          adapter: "tank1",
          metric: "level",
          value: 99,
        });
        assert.equal(answer.ok, false);
        assert.equal(answer.error.code, "not_writable");
        assert.deepEqual(await s.device.get("holding", 0), [500]);
      });

      await t.step("an unknown adapter, an unknown point, a bad value are refused", async () => {
        let { answer } = await s.call("adapter-write", {
          id: "w4",
          adapter: "tank9",
          metric: "valve",
          value: false,
        });
        assert.equal(answer.error.code, "unknown_point");
        assert.match(answer.error.message, /no adapter 'tank9'/);
        ({ answer } = await s.call("adapter-write", {
          id: "w5",
          adapter: "tank1",
          metric: "drain",
          value: false,
        }));
        assert.equal(answer.error.code, "unknown_point");
        ({ answer } = await s.call("adapter-write", {
          id: "w6",
          adapter: "tank1",
          metric: "valve",
          value: "closed",
        }));
        assert.equal(answer.error.code, "invalid_params");
        // Values the point's type cannot hold: refused before anything is sent.
        ({ answer } = await s.call("adapter-write", {
          id: "w7",
          adapter: "tank1",
          metric: "setpoint",
          value: 40_000,
        }));
        assert.equal(answer.error.code, "invalid_value");
        assert.match(answer.error.message, /outside int16/);
        ({ answer } = await s.call("adapter-write", {
          id: "w8",
          adapter: "tank1",
          metric: "valve",
          value: 2,
        }));
        assert.equal(answer.error.code, "invalid_value");
        assert.deepEqual(await s.device.get("coil", 0), [1], "still open");
        assert.equal(await s.device.read("holding", 5, "int16"), -300, "setpoint unchanged");
      });

      await t.step("answers stay under PREFIX/cmd/adapter-write/", async () => {
        for (
          const [i, asked] of ["pwn/x", "devices/tank1/valve/set", `${PREFIX}/status`].entries()
        ) {
          const { topic, answer, correlation } = await s.call(
            "adapter-write",
            { id: `r${i}`, adapter: "tank1", metric: "valve", value: false },
            asked,
          );
          oks++;
          assert.equal(answer.ok, true, JSON.stringify(answer));
          assert.equal(topic, `${REQUESTS}/result`, `asked for ${asked}`);
          assert.equal(correlation, `corr-r${i}`);
        }
        const own = `${REQUESTS}/result/me`;
        const { topic } = await s.call(
          "adapter-write",
          { id: "r-own", adapter: "tank1", metric: "valve", value: false },
          own,
        );
        oks++;
        assert.equal(topic, own);
        assert.deepEqual(
          s.seen.filter((m) => m.topic.startsWith("pwn/") || m.topic.startsWith("devices/")),
          [],
        );
        assert.deepEqual(await s.device.get("coil", 0), [0]);
      });

      await t.step("a rate per command: refused writes never reach the device", async () => {
        const answers: Answer[] = [];
        for (let v = 1; v <= 30; v++) {
          const { answer } = await s.call("adapter-write", {
            id: `burst-${v}`,
            adapter: "tank1",
            metric: "setpoint",
            value: v,
          });
          answers.push(answer);
          if (answers.slice(-3).every((a) => a.error?.code === "rate_limited")) break;
        }
        const done = answers.filter((a) => a.ok);
        const limited = answers.filter((a) => a.error?.code === "rate_limited");
        oks += done.length;
        assert.ok(limited.length >= 3, `${limited.length} rate-limited`);
        assert.ok(done.length < 20, `${done.length} writes ran in the burst`);
        assert.match(limited[0].error.message, /20 requests per minute/);
        assert.ok(answers.every((a) => a.ok || a.error.code === "rate_limited"));
        // The register holds the last write that ran: none refused after it landed.
        assert.equal(await s.device.read("holding", 5, "int16"), done.at(-1)!.result.value);
        const ping = await s.call("ping", { id: "p-after" });
        assert.equal(ping.answer.ok, true, "another command keeps its own budget");
      });

      await t.step("metrics count what ran", async () => {
        assert.equal(
          await metric(s.edged, 'edged_adapter_writes_total{adapter="tank1",outcome="ok"}'),
          oks,
        );
        assert.equal(
          await metric(
            s.edged,
            'edged_adapter_writes_total{adapter="tank1",outcome="not_writable"}',
          ),
          1,
        );
        assert.equal(
          await metric(
            s.edged,
            'edged_adapter_writes_total{adapter="tank1",outcome="invalid_value"}',
          ),
          2,
        );
        assert.equal(
          await metric(
            s.edged,
            'edged_mqtt_commands_total{command="adapter-write",outcome="ok"}',
          ),
          oks,
        );
      });
    } finally {
      await s.close();
    }
  },
});

Deno.test({
  name: "adapter-write: off by default; a broker message on devices/.../set writes nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const s = await setup({ EDGED_MQTT_SUBSCRIBE: "devices/#" });
    try {
      const { topic, answer } = await s.call("adapter-write", {
        id: "n1",
        adapter: "tank1",
        metric: "valve",
        value: true,
      });
      assert.equal(topic, `${REQUESTS}/result`);
      assert.equal(answer.ok, false);
      assert.equal(answer.error.code, "command_not_allowed");
      assert.match(answer.error.message, /mqtt\.commands\.allow/);

      // The broker's own message reaches the bus (mqtt.subscribe) and is refused there.
      await s.client.publishAsync("devices/tank1/valve/set", "true", { qos: 1 });
      await until(
        "the broker's write refused",
        async () =>
          await metric(
            s.edged,
            'edged_adapter_writes_total{adapter="tank1",outcome="forbidden"}',
          ) === 1,
      );
      assert.deepEqual(await s.device.get("coil", 0), [0], "the valve stayed closed");
      assert.equal(
        await metric(s.edged, 'edged_adapter_writes_total{adapter="tank1",outcome="ok"}'),
        undefined,
      );
    } finally {
      await s.close();
    }
  },
});
