/**
 * The adapter framework with the real reading log (SQLite), bus and metrics
 * registry, and a Modbus adapter against pymodbus: readings become durable
 * under the adapter's device, bus writes are gated and answered, and the
 * state shows in the API, readiness and metrics.
 */
import assert from "node:assert/strict";
import {
  adaptersComponent,
  adapterWriteCommand,
  CommandRegistry,
  ModbusAdapter,
} from "../../protocols/mod.ts";
import { Bus, Metrics, ReadingLog, Store } from "../../runtime/mod.ts";
import { adaptersSchema } from "../../runtime/schema.ts";
import { type ModbusServer, startModbusServer } from "../_helpers/modbus.ts";
import { until } from "./_modbus.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function setup(server: ModbusServer, block: Record<string, unknown> = {}) {
  const dir = await Deno.makeTempDir({ prefix: "edged-adapters-" });
  const store = Store.open(dir);
  const readings = new ReadingLog(store);
  const bus = new Bus();
  const metrics = new Metrics();
  const config = adaptersSchema.parse({
    modbus: [{
      name: "plc1",
      url: server.url,
      device_id: "press-3",
      poll_ms: 50,
      timeout_ms: 200,
      points: [
        { metric: "level", address: 0 },
        { metric: "valve", table: "coil", address: 1, writable: true },
        { metric: "setpoint", address: 5, type: "int16", writable: true },
      ],
      ...block,
    }],
  });
  const component = adaptersComponent({
    config,
    factories: {
      modbus: (b) => new ModbusAdapter(b, { reconnectMinMs: 50, reconnectMaxMs: 300 }),
      opcua: () => {
        throw new Error("this test configures no OPC UA adapter");
      },
    },
    bus,
    readings,
    metrics,
    maxPendingWrites: 1,
  });
  const results: { topic: string; body: Record<string, unknown> }[] = [];
  bus.subscribe(
    "devices/+/+/set/result",
    (m) => results.push({ topic: m.topic, body: JSON.parse(dec.decode(m.payload)) }),
  );
  const close = async () => {
    await component.stop?.();
    await readings.flushed();
    store.close();
    await Deno.remove(dir, { recursive: true });
  };
  return { store, readings, bus, metrics, component, results, close };
}

function sample(metrics: Metrics, line: string): number {
  const row = metrics.render().split("\n").find((l) => l.startsWith(line + " "));
  return row ? Number(row.slice(line.length + 1)) : NaN;
}

Deno.test("adapters: readings go durable under the adapter's device; API and metrics tell", async () => {
  const server = await startModbusServer();
  const t = await setup(server);
  try {
    await server.set("holding", 0, [17]);
    assert.deepEqual(t.component.notReady?.(), [], "nothing to report before start");
    await t.component.start?.();
    await until("connected", () => t.component.notReady?.().length === 0);
    await until("readings committed", () => t.component.status()[0].readings >= 6);

    const stored = t.readings.readAfter(0, 10_000);
    assert.ok(stored.length >= 6);
    assert.ok(stored.every((r) => r.device_id === "press-3"));
    assert.deepEqual(new Set(stored.map((r) => r.metric)), new Set(["level", "valve", "setpoint"]));
    assert.equal(stored.filter((r) => r.metric === "level").at(-1)!.value, 17);

    const res = await t.component.routes![0].app.request("/");
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.adapters.length, 1);
    const a = body.adapters[0];
    assert.equal(a.name, "plc1");
    assert.equal(a.kind, "modbus");
    assert.equal(a.device_id, "press-3");
    assert.equal(a.state, "connected");
    assert.equal(a.endpoint, `tcp://127.0.0.1:${server.port}`);
    assert.equal(a.points.find((p: { metric: string }) => p.metric === "level").last_value, 17);
    assert.equal((await t.component.routes![0].app.request("/plc1")).status, 200);

    const committed = t.component.status()[0].readings;
    assert.ok(sample(t.metrics, 'edged_adapter_readings_total{adapter="plc1"}') <= committed);
    assert.ok(sample(t.metrics, 'edged_adapter_readings_total{adapter="plc1"}') > 0);
    assert.ok(sample(t.metrics, 'edged_adapter_polls_total{adapter="plc1",outcome="ok"}') > 0);
    assert.ok(sample(t.metrics, 'edged_adapter_poll_duration_seconds_count{adapter="plc1"}') > 0);
    assert.equal(sample(t.metrics, 'edged_adapter_connected{adapter="plc1"}'), 1);

    // The device goes away: a readiness reason, a gauge at 0, connection errors counted.
    await server.stop();
    await until("a readiness reason", () => t.component.notReady?.()[0]);
    assert.match(t.component.notReady!()[0], /^plc1: (connecting|backoff)/);
    assert.equal(sample(t.metrics, 'edged_adapter_connected{adapter="plc1"}'), 0);
    await until(
      "connection errors counted",
      () => sample(t.metrics, 'edged_adapter_errors_total{adapter="plc1",kind="connection"}') > 0,
    );
  } finally {
    await t.close();
    await server.stop();
  }
});

Deno.test("adapters: writes through the bus are answered on /set/result; broker messages may not write", async () => {
  const server = await startModbusServer();
  const t = await setup(server);
  try {
    await t.component.start?.();
    await until("connected", () => t.component.notReady?.().length === 0);
    const set = (topic: string, payload: unknown, source = "module:loop") =>
      t.bus.publish(topic, enc.encode(JSON.stringify(payload)), source);
    const answer = (n: number) => until(`answer ${n}`, () => t.results[n - 1]);

    set("devices/plc1/valve/set", true);
    let r = await answer(1);
    assert.equal(r.topic, "devices/plc1/valve/set/result");
    assert.deepEqual(r.body, { ok: true, value: true, source: "module:loop" });
    assert.deepEqual(await server.get("coil", 1), [1]);

    set("devices/plc1/setpoint/set", { value: -7, id: "req-1" });
    r = await answer(2);
    assert.deepEqual(r.body, { ok: true, id: "req-1", value: -7, source: "module:loop" });
    assert.equal(await server.read("holding", 5, "int16"), -7);

    set("devices/plc1/valve/set", false, "mqtt");
    r = await answer(3);
    assert.equal(r.body.ok, false);
    assert.equal((r.body.error as { code: string }).code, "forbidden");
    assert.equal(r.body.source, "mqtt");
    assert.deepEqual(await server.get("coil", 1), [1], "the broker's write did not happen");

    t.bus.publish("devices/plc1/valve/set", enc.encode("not json"), "module:loop");
    assert.equal(((await answer(4)).body.error as { code: string }).code, "invalid_value");
    set("devices/plc1/level/set", 3, "module:loop");
    assert.equal(((await answer(5)).body.error as { code: string }).code, "not_writable");
    set("devices/plc9/level/set", { value: 3, id: 7 });
    r = await answer(6);
    assert.equal((r.body.error as { code: string }).code, "unknown_point");
    assert.equal(r.body.id, 7);
    assert.ok(
      !t.metrics.render().includes('adapter="plc9"'),
      "a made-up adapter name gets no metric label",
    );

    // One write may wait at a time (maxPendingWrites 1): the device stalls the first.
    await server.fault("holding", 5, 0);
    set("devices/plc1/setpoint/set", 1);
    set("devices/plc1/setpoint/set", 2);
    const busy = await answer(7);
    assert.equal((busy.body.error as { code: string }).code, "busy");
    const stalled = await answer(8);
    assert.equal((stalled.body.error as { code: string }).code, "timeout");

    assert.equal(sample(t.metrics, 'edged_adapter_writes_total{adapter="plc1",outcome="ok"}'), 2);
    assert.equal(
      sample(t.metrics, 'edged_adapter_writes_total{adapter="plc1",outcome="forbidden"}'),
      1,
    );
    const status = t.component.status()[0];
    assert.equal(status.points.find((p) => p.metric === "valve")!.writes, 1);
  } finally {
    await t.close();
    await server.stop();
  }
});

Deno.test("adapters: the adapter-write command writes like a module, answers its code, reports on /set/result", async () => {
  const server = await startModbusServer();
  const t = await setup(server);
  try {
    const commands = new CommandRegistry({ allow: ["adapter-write"] });
    commands.register("adapter-write", adapterWriteCommand(t.component));
    const call = (params: Record<string, unknown>) =>
      commands.handle("adapter-write", enc.encode(JSON.stringify(params)));

    // MQTT starts first: a request may come before the adapters have started.
    let res = await call({ adapter: "plc1", metric: "valve", value: true });
    assert.equal(res.error?.code, "connection");
    assert.match(res.error!.message, /'plc1' has not started/);

    await t.component.start?.();
    await until("connected", () => t.component.notReady?.().length === 0);

    res = await call({ id: "c1", adapter: "plc1", metric: "setpoint", value: -12 });
    assert.deepEqual(res, {
      id: "c1",
      command: "adapter-write",
      ok: true,
      result: { adapter: "plc1", metric: "setpoint", value: -12 },
    });
    assert.equal(await server.read("holding", 5, "int16"), -12);
    assert.deepEqual(t.results.at(-1), {
      topic: "devices/plc1/setpoint/set/result",
      body: { ok: true, id: "c1", value: -12, source: "command:adapter-write" },
    });

    res = await call({ id: "c2", adapter: "plc1", metric: "level", value: 1 });
    assert.equal(res.error?.code, "not_writable");
    assert.equal(t.results.at(-1)!.topic, "devices/plc1/level/set/result");
    assert.equal(t.results.at(-1)!.body.source, "command:adapter-write");
    // A point that does not exist is answered to the requester only: a
    // broker client's made-up names put no topic on the bus.
    let published = t.results.length;
    assert.equal(
      (await call({ adapter: "plc9", metric: "valve", value: true })).error?.code,
      "unknown_point",
    );
    assert.equal(
      (await call({ adapter: "plc1", metric: "nope", value: true })).error?.code,
      "unknown_point",
    );
    assert.equal(t.results.length, published, "no outcome for a point that does not exist");
    // A value the point's type cannot hold: the codec's own refusal, reported like any outcome.
    assert.equal(
      (await call({ adapter: "plc1", metric: "setpoint", value: 70000 })).error?.code,
      "invalid_value",
    );
    assert.equal(t.results.length, ++published);
    assert.equal((t.results.at(-1)!.body.error as { code: string }).code, "invalid_value");
    assert.equal(
      await server.read("holding", 5, "int16"),
      -12,
      "no refused write reached the device",
    );

    // Bad parameters never reach the adapters, and report nothing on the bus.
    const before = t.results.length;
    for (
      const bad of [
        { metric: "valve", value: true },
        { adapter: "plc1", value: true },
        { adapter: "plc1", metric: "valve" },
        { adapter: "plc1", metric: "valve", value: "open" },
        { adapter: "plc1", metric: "valve", value: null },
        { adapter: 3, metric: "valve", value: true },
      ]
    ) {
      assert.equal((await call(bad)).error?.code, "invalid_params", JSON.stringify(bad));
    }
    assert.equal(t.results.length, before);

    // A name that is not one topic level cannot choose where the outcome goes.
    res = await call({ adapter: "plc1/valve/set/result", metric: "x", value: true });
    assert.equal(res.error?.code, "unknown_point");
    res = await call({ adapter: "plc1", metric: "valve/+", value: true });
    assert.equal(res.error?.code, "unknown_point");
    assert.equal(t.results.length, before, "no outcome published for names that are not a level");
    assert.deepEqual(await server.get("coil", 1), [0]);

    assert.equal(sample(t.metrics, 'edged_adapter_writes_total{adapter="plc1",outcome="ok"}'), 1);
    assert.equal(
      sample(t.metrics, 'edged_adapter_writes_total{adapter="plc1",outcome="not_writable"}'),
      1,
    );
  } finally {
    await t.close();
    await server.stop();
  }
});
