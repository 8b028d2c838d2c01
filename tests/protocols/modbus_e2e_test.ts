/**
 * What the README promises, end to end: a real edged process pointed at a
 * Modbus device (pymodbus) by its configuration file reads the device's
 * registers into the durable reading log, they reach the broker (Mosquitto),
 * and the example C module (examples/modules/level-control-c, built by clang)
 * closes the loop by writing a coil back through `devices/tank1/valve/set`.
 * Then the device vanishes and returns, and edged is killed: every reading
 * the adapter counted as committed is on disk.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type EdgedProcess, startEdged } from "../_helpers/edged.ts";
import { startModbusServer } from "../_helpers/modbus.ts";
import { startMosquitto, subscribe } from "../_helpers/mosquitto.ts";
import { tankConfig as config, until } from "./_modbus.ts";

const MODULE = new URL("../../examples/modules/level-control-c/", import.meta.url).pathname;

async function adapters(edged: EdgedProcess) {
  const res = await edged.api("/api/v1/adapters");
  assert.equal(res.status, 200);
  return (await res.json()).adapters as {
    name: string;
    state: string;
    readings: number;
    reconnects: number;
    points: { metric: string; last_value: number | null; writes: number }[];
  }[];
}

async function deploy(edged: EdgedProcess): Promise<void> {
  const fd = new FormData();
  fd.append("manifest", await Deno.readTextFile(`${MODULE}manifest.json`));
  fd.append("module", new Blob([await Deno.readFile(`${MODULE}module.wasm`)]), "module.wasm");
  const res = await edged.api("/api/v1/modules/level-control", { method: "PUT", body: fd });
  assert.equal(res.status, 201, await res.text());
}

Deno.test({
  name: "modbus e2e: registers reach the log and the broker; a module writes a coil back",
  async fn() {
    const device = await startModbusServer();
    const broker = await startMosquitto();
    const dir = await Deno.makeTempDir({ prefix: "edged-modbus-e2e-" });
    let edged: EdgedProcess | null = null;
    try {
      await Deno.writeTextFile(`${dir}/edged.toml`, config(device.url));
      await device.set("holding", 0, [500]); // 50.0 %
      const sub = await subscribe(broker, "edged/gw-1/up/sensors/tank1/#");
      edged = await startEdged({
        args: ["--config", `${dir}/edged.toml`],
        env: { EDGED_DEVICE_ID: "gw-1", EDGED_MQTT_URL: broker.url },
      });
      await deploy(edged);

      // Readings of the device, on the broker under the adapter's device.
      await sub.waitFor(
        (ms) => ms.some((m) => m.topic.endsWith("/level") && JSON.parse(m.payload!).value === 50),
        15_000,
        "a level reading at the broker",
      );
      const first = sub.messages.find((m) => m.topic.endsWith("/level"))!;
      assert.equal(first.topic, "edged/gw-1/up/sensors/tank1/level");
      assert.equal(JSON.parse(first.payload!).device_id, "tank1");

      // The loop: the level rises past 80 %, the module opens the drain valve.
      assert.deepEqual(await device.get("coil", 0), [0]);
      await device.set("holding", 0, [853]);
      await until("the valve opened", async () => (await device.get("coil", 0))[0] === 1, 15_000);
      // ... and it falls below 20 %: closed again.
      await device.set("holding", 0, [120]);
      await until("the valve closed", async () => (await device.get("coil", 0))[0] === 0, 15_000);

      // The device holds the write before edged has its answer and counts it.
      const [tank] = await until("both writes counted", async () => {
        const all = await adapters(edged!);
        return all[0].points.find((p) => p.metric === "valve")!.writes >= 2 ? all : undefined;
      });
      assert.equal(tank.name, "tank1");
      assert.equal(tank.state, "connected");
      assert.equal(tank.points.find((p) => p.metric === "valve")!.writes, 2);
      await until(
        "the closed valve read back",
        async () =>
          (await adapters(edged!))[0].points.find((p) => p.metric === "valve")!.last_value === 0,
      );
      const mod = await (await edged.api("/api/v1/modules/level-control")).json();
      assert.equal(mod.state, "running");
      assert.equal(mod.errors, 0);

      assert.equal((await edged.api("/api/v1/adapters/tank1")).status, 200);
      const missing = await edged.api("/api/v1/adapters/nope");
      assert.equal(missing.status, 404);
      assert.equal((await missing.json()).error.code, "not_found");
      assert.equal((await fetch(`${edged.url}/api/v1/adapters`)).status, 401);

      const metrics = await (await fetch(`${edged.url}/metrics`)).text();
      assert.match(metrics, /^edged_adapter_connected\{adapter="tank1"\} 1$/m);
      assert.match(metrics, /^edged_adapter_polls_total\{adapter="tank1",outcome="ok"\} [1-9]/m);
      assert.match(metrics, /^edged_adapter_readings_total\{adapter="tank1"\} [1-9]/m);
      assert.match(metrics, /^edged_adapter_writes_total\{adapter="tank1",outcome="ok"\} 2$/m);
      assert.match(metrics, /^edged_adapter_poll_duration_seconds_bucket\{adapter="tank1",le=/m);
      await sub.stop();
    } finally {
      await edged?.stop();
      await device.stop();
      await broker.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "modbus e2e: a device away is a readiness reason; back, polls resume; kill -9 loses nothing counted",
  async fn() {
    let device = await startModbusServer();
    const port = device.port;
    const dir = await Deno.makeTempDir({ prefix: "edged-modbus-e2e-" });
    let edged: EdgedProcess | null = null;
    try {
      await Deno.writeTextFile(`${dir}/edged.toml`, config(device.url));
      await device.set("holding", 0, [10]);
      edged = await startEdged({ args: ["--config", `${dir}/edged.toml`] });
      await until("readings", async () => (await adapters(edged!))[0].readings > 10);

      await device.stop();
      const reason = await until("a readiness reason", async () => {
        const res = await fetch(`${edged!.url}/readyz`);
        const body = await res.json();
        return res.status === 503 ? body.reasons as string[] : undefined;
      });
      assert.ok(
        reason.some((r) => /^adapters: tank1: (connecting|backoff)/.test(r)),
        reason.join(),
      );
      const away = (await adapters(edged))[0].readings;

      device = await startModbusServer({ port });
      await device.set("holding", 0, [20]);
      await until(
        "ready again",
        async () => (await fetch(`${edged!.url}/readyz`)).status === 200,
        20_000,
      );
      await until("polls resumed", async () => {
        const [t] = await adapters(edged!);
        return t.readings > away + 10 && t.points[0].last_value === 2;
      });
      assert.ok((await adapters(edged))[0].reconnects >= 1);

      // Everything counted as committed before the kill is on disk.
      const counted = (await adapters(edged))[0].readings;
      edged.child.kill("SIGKILL");
      await edged.exited;
      const db = new DatabaseSync(`${edged.dataDir}/edged.db`, { readOnly: true });
      try {
        const row = db.prepare("SELECT count(*) AS n FROM readings WHERE device_id = 'tank1'")
          .get() as { n: number };
        assert.ok(row.n >= counted, `${row.n} rows on disk, ${counted} counted as committed`);
        const levels = db.prepare(
          "SELECT DISTINCT value FROM readings WHERE device_id = 'tank1' AND metric = 'level'",
        ).all().map((r) => (r as { value: number }).value);
        assert.deepEqual(levels.sort(), [1, 2]);
      } finally {
        db.close();
      }
    } finally {
      await edged?.stop();
      await device.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
