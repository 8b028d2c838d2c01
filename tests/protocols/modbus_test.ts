/**
 * The Modbus adapter against a real Modbus server nobody on the team wrote
 * (Debian's python3-pymodbus): values are encoded and decoded by pymodbus's
 * own payload builder and decoder, over Modbus TCP, RTU over TCP and RTU on
 * a serial line (a pseudo-terminal).
 */
import assert from "node:assert/strict";
import { AdapterError } from "../../protocols/mod.ts";
import { startModbusServer, type WordType } from "../_helpers/modbus.ts";
import { lastValue, modbusAdapter, recordingSink, until } from "./_modbus.ts";

const WORD_TYPES: { type: WordType; value: number }[] = [
  { type: "int16", value: -12345 },
  { type: "uint16", value: 54321 },
  { type: "int32", value: -1234567890 },
  { type: "uint32", value: 3_000_000_000 },
  { type: "float32", value: -1234.5 },
  { type: "float64", value: 3.141592653589793 },
];

for (const framing of ["tcp", "rtu+tcp", "serial rtu"] as const) {
  Deno.test(`modbus ${framing}: every type in both word orders, bits, scale and offset, writes, an exception`, async () => {
    const server = await startModbusServer(
      framing === "serial rtu"
        ? { serial: true }
        : { framing: framing === "tcp" ? "socket" : "rtu" },
    );
    const sink = recordingSink();
    const points: Record<string, unknown>[] = [];
    try {
      // Spaced 10 apart: one request per type and order, so a wrong offset shows.
      let address = 0;
      for (const { type, value } of WORD_TYPES) {
        for (const order of ["big", "little"] as const) {
          await server.put("holding", address, type, value, order);
          points.push({ metric: `${type}-${order}`, address, type, word_order: order });
          address += 10;
        }
      }
      await server.put("input", 7, "int16", -250);
      points.push({
        metric: "scaled",
        table: "input",
        address: 7,
        type: "int16",
        scale: 0.1,
        offset: 40,
      });
      await server.set("coil", 5, [1]);
      await server.set("discrete", 9, [1]);
      await server.set("holding", 200, [7]);
      points.push(
        { metric: "coil-on", table: "coil", address: 5 },
        { metric: "coil-off", table: "coil", address: 6 },
        { metric: "discrete-on", table: "discrete", address: 9 },
        { metric: "register-bool", address: 200, type: "bool" },
      );
      const writable = [
        { metric: "w-coil", table: "coil", address: 30, writable: true },
        { metric: "w-float", address: 300, type: "float32", word_order: "little", writable: true },
        { metric: "w-int16", address: 310, type: "int16", writable: true },
      ];
      const absent = { metric: "absent", table: "input", address: 1000 }; // the table ends at 999
      const adapter = modbusAdapter({
        url: server.url,
        points: [...points, ...writable, absent],
        device_id: "press-3",
      });
      await adapter.start(sink);
      try {
        await until(
          "a reading of every point",
          () => points.every((p) => lastValue(sink.got, p.metric as string) !== undefined),
        );
        for (const { type, value } of WORD_TYPES) {
          for (const order of ["big", "little"]) {
            assert.equal(lastValue(sink.got, `${type}-${order}`), value, `${type} ${order}`);
          }
        }
        assert.equal(lastValue(sink.got, "scaled"), -250 * 0.1 + 40);
        assert.equal(lastValue(sink.got, "coil-on"), 1);
        assert.equal(lastValue(sink.got, "coil-off"), 0);
        assert.equal(lastValue(sink.got, "discrete-on"), 1);
        assert.equal(lastValue(sink.got, "register-bool"), 1);
        const s = adapter.status();
        assert.equal(s.state, "connected");
        const errors = s.points.filter((p) => p.last_error !== null);
        assert.deepEqual(errors.map((p) => p.metric), ["absent"]);
        assert.equal(errors[0].last_error!.kind, "exception");
        assert.match(errors[0].last_error!.message, /^illegal data address/);
        assert.ok(sink.got.every((r) => Number.isInteger(r.timestamp) && r.timestamp > 1.7e12));

        // Writes in this framing (functions 5, 16 and 6), as pymodbus decodes them.
        await adapter.write("w-coil", true);
        await adapter.write("w-float", -0.375);
        await adapter.write("w-int16", -300);
        assert.deepEqual(await server.get("coil", 30), [1]);
        assert.equal(await server.read("holding", 300, "float32", "little"), -0.375);
        assert.equal(await server.read("holding", 310, "int16"), -300);
      } finally {
        await adapter.stop();
      }
      assert.equal(adapter.status().state, "stopped");
    } finally {
      await server.stop();
    }
  });
}

Deno.test("modbus: contiguous points share requests within 125 registers and 2000 bits", async () => {
  const server = await startModbusServer({ size: 3000 });
  const sink = recordingSink();
  try {
    const points = [
      // 130 registers back to back: 125 + 5.
      ...Array.from({ length: 130 }, (_, i) => ({ metric: `r${i}`, address: i })),
      // 2100 coils back to back: 2000 + 100.
      ...Array.from({ length: 2100 }, (_, i) => ({ metric: `c${i}`, table: "coil", address: i })),
      // Overlapping views of the same registers ride along.
      { metric: "pair", address: 10, type: "uint32" },
      // A gap is never read across: its own request.
      { metric: "apart", address: 500 },
    ];
    await server.set("holding", 0, Array.from({ length: 130 }, (_, i) => i * 3));
    await server.set("coil", 2099, [1]);
    await server.set("holding", 500, [42]);
    const adapter = modbusAdapter({ url: server.url, points, poll_ms: 60_000 });
    assert.equal(adapter.requestsPerPoll, 5);
    const before = await server.requests();
    await adapter.start(sink);
    try {
      await until("one poll", () => adapter.status().last_poll !== null);
      assert.equal(await server.requests() - before, 5, "one poll took five requests");
      assert.equal(lastValue(sink.got, "r129"), 129 * 3);
      assert.equal(lastValue(sink.got, "c2099"), 1);
      assert.equal(lastValue(sink.got, "c0"), 0);
      assert.equal(lastValue(sink.got, "pair"), 30 * 65536 + 33);
      assert.equal(lastValue(sink.got, "apart"), 42);
      assert.equal(sink.got.length, points.length);
    } finally {
      await adapter.stop();
    }
  } finally {
    await server.stop();
  }
});

Deno.test("modbus: exception responses and timeouts are errors of their points, by name", async () => {
  const server = await startModbusServer({ size: 100 });
  const sink = recordingSink();
  try {
    await server.set("holding", 0, Array.from({ length: 20 }, (_, i) => i + 1));
    await server.set("input", 98, [98, 99]);
    const cases: [number, number, string][] = [
      [0, 0x01, "illegal function"],
      [2, 0x04, "server device failure"],
      [4, 0x06, "server device busy"],
      [6, 0x0a, "gateway path unavailable"],
      [8, 0x0b, "gateway target device failed to respond"],
    ];
    for (const [address, code] of cases) await server.fault("holding", address, code);
    await server.fault("holding", 20, 0); // no answer at all
    const points = [
      ...Array.from({ length: 10 }, (_, i) => ({ metric: `h${i}`, address: i * 2 })),
      { metric: "silent", address: 20 },
      // 98 and 99 exist, 100 does not: the shared request fails with
      // "illegal data address", and the good points are read one by one.
      { metric: "i98", table: "input", address: 98 },
      { metric: "i99", table: "input", address: 99 },
      { metric: "i100", table: "input", address: 100 },
    ];
    const adapter = modbusAdapter({ url: server.url, points, timeout_ms: 150 });
    await adapter.start(sink);
    try {
      await until(
        "the good points",
        () => lastValue(sink.got, "h5") !== undefined && lastValue(sink.got, "i99") !== undefined,
      );
      await until("an error on every bad point", () => {
        const s = adapter.status();
        return ["h0", "h1", "h2", "h3", "h4", "silent", "i100"].every((m) =>
          s.points.find((p) => p.metric === m)!.last_error !== null
        );
      });
      const s = adapter.status();
      const point = (m: string) => s.points.find((p) => p.metric === m)!;
      cases.forEach(([address, , name]) => {
        const p = point(`h${address / 2}`);
        assert.equal(p.last_error?.kind, "exception", `h${address / 2}`);
        assert.ok(p.last_error!.message.startsWith(name), p.last_error!.message);
        assert.equal(p.last_value, null);
      });
      assert.equal(point("silent").last_error?.kind, "timeout");
      assert.equal(point("i100").last_error?.kind, "exception");
      assert.match(point("i100").last_error!.message, /^illegal data address/);
      assert.equal(lastValue(sink.got, "i98"), 98);
      assert.equal(lastValue(sink.got, "i99"), 99);
      for (const m of ["h5", "h6", "h7", "h8", "h9"]) {
        assert.equal(point(m).last_error, null, m);
        assert.equal(lastValue(sink.got, m), Number(m.slice(1)) * 2 + 1);
      }
      // A timeout of one point is not a dead connection.
      assert.equal(s.state, "connected");
      assert.equal(s.reconnects, 0);

      // Faults cleared: the same points read again.
      await server.clear();
      await until("h0 after the fault", () => lastValue(sink.got, "h0") === 1);
      await until(
        "h0's error cleared",
        () => adapter.status().points.find((p) => p.metric === "h0")!.last_error === null,
      );
    } finally {
      await adapter.stop();
    }
  } finally {
    await server.stop();
  }
});

Deno.test("modbus: a unit that never answers is a dead connection: reconnect with back-off", async () => {
  const server = await startModbusServer({ unit: 1 });
  const sink = recordingSink();
  try {
    const adapter = modbusAdapter({
      url: server.url,
      unit_id: 9,
      timeout_ms: 100,
      points: [{ metric: "x", address: 0 }],
    });
    await adapter.start(sink);
    try {
      await until("two reconnects", () => adapter.status().reconnects >= 2, 15_000);
      const s = adapter.status();
      assert.equal(s.points[0].last_error?.kind, "timeout");
      assert.match(s.last_error!.message, /no response|timeout|within/);
      assert.equal(sink.got.length, 0);
    } finally {
      await adapter.stop();
    }
  } finally {
    await server.stop();
  }
});

Deno.test("modbus: writes of coils and registers, as pymodbus reads them back", async () => {
  const server = await startModbusServer();
  const sink = recordingSink();
  try {
    const adapter = modbusAdapter({
      url: server.url,
      points: [
        { metric: "valve", table: "coil", address: 3, writable: true },
        { metric: "setpoint", address: 10, type: "int16", writable: true },
        { metric: "flow", address: 20, type: "float32", word_order: "little", writable: true },
        { metric: "big", address: 30, type: "float64", writable: true },
        { metric: "count", address: 40, type: "uint32", writable: true },
        { metric: "scaled", address: 50, type: "uint16", scale: 0.5, offset: 10, writable: true },
        { metric: "readonly", address: 60 },
        { metric: "input", table: "input", address: 0 },
      ],
    });
    await adapter.start(sink);
    try {
      await until("connected", () => adapter.status().state === "connected");
      await adapter.write("valve", true);
      assert.deepEqual(await server.get("coil", 3), [1]);
      await adapter.write("valve", 0);
      assert.deepEqual(await server.get("coil", 3), [0]);
      await adapter.write("setpoint", -42);
      assert.equal(await server.read("holding", 10, "int16"), -42);
      await adapter.write("flow", 2.75);
      assert.equal(await server.read("holding", 20, "float32", "little"), 2.75);
      await adapter.write("big", -1e100);
      assert.equal(await server.read("holding", 30, "float64"), -1e100);
      await adapter.write("count", 4_000_000_000);
      assert.equal(await server.read("holding", 40, "uint32"), 4_000_000_000);
      await adapter.write("scaled", 21); // raw (21 - 10) / 0.5 = 22
      assert.deepEqual(await server.get("holding", 50), [22]);
      await until(
        "the written values read back",
        () => lastValue(sink.got, "setpoint") === -42 && lastValue(sink.got, "scaled") === 21,
      );
      assert.equal(adapter.status().points.find((p) => p.metric === "setpoint")!.writes, 1);

      const refused = async (metric: string, value: number | boolean, kind: string) => {
        const err = await adapter.write(metric, value).then(() => null, (e) => e);
        assert.ok(err instanceof AdapterError, `${metric}=${value} was written`);
        assert.equal(err.kind, kind, `${metric}=${value}: ${err.message}`);
        return err;
      };
      await refused("readonly", 1, "not_writable");
      await refused("input", 1, "not_writable");
      await refused("nothing", 1, "unknown_point");
      await refused("setpoint", 40_000, "invalid_value");
      await refused("setpoint", true, "invalid_value");
      await refused("valve", 2, "invalid_value");
      await refused("count", -1, "invalid_value");
      await server.fault("holding", 10, 0x03);
      const e = await refused("setpoint", 5, "exception");
      assert.match(e.message, /^illegal data value/);
      assert.equal(await server.read("holding", 10, "int16"), -42, "nothing written");
    } finally {
      await adapter.stop();
    }
    const err = await adapter.write("valve", true).then(() => null, (e) => e);
    assert.equal(err?.kind, "connection", "a stopped adapter refuses writes");
  } finally {
    await server.stop();
  }
});

Deno.test("modbus: a server that disappears and returns: polls resume, the adapter reconnects", async () => {
  let server = await startModbusServer();
  const sink = recordingSink();
  const port = server.port;
  try {
    await server.set("holding", 0, [1]);
    const adapter = modbusAdapter({
      url: server.url,
      timeout_ms: 200,
      points: [{ metric: "level", address: 0 }],
    });
    await adapter.start(sink);
    try {
      await until("a first value", () => lastValue(sink.got, "level") === 1);
      await server.stop();
      await until("the loss noticed", () => adapter.status().state !== "connected");
      assert.equal(adapter.status().last_error?.kind, "connection");
      const during = sink.got.length;
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(sink.got.length, during, "no readings while the device is away");

      server = await startModbusServer({ port });
      await server.set("holding", 0, [2]);
      await until("values again", () => lastValue(sink.got, "level") === 2, 15_000);
      const s = adapter.status();
      assert.equal(s.state, "connected");
      assert.ok(s.reconnects >= 1);
      assert.equal(s.points[0].last_error, null);
    } finally {
      await adapter.stop();
    }
  } finally {
    await server.stop();
  }
});

Deno.test("modbus: readings the log refuses wait and are offered again, in order", async () => {
  const server = await startModbusServer();
  const sink = recordingSink();
  try {
    const adapter = modbusAdapter({ url: server.url, points: [{ metric: "n", address: 0 }] });
    await adapter.start(sink);
    try {
      await until("a first value", () => sink.got.length > 0);
      sink.refuse = true;
      const seen = sink.got.length;
      for (let v = 1; v <= 5; v++) {
        await server.set("holding", 0, [v]);
        // Each value is read at least once (a fixed pause missed one on a loaded machine).
        await until(`value ${v} read`, () => adapter.status().points[0].last_value === v);
      }
      await until("the refusal reported", () => adapter.status().last_error?.kind === "full");
      assert.equal(sink.got.length, seen);
      const committed = adapter.status().readings;
      sink.refuse = false;
      await until("the backlog delivered", () => lastValue(sink.got, "n") === 5);
      const values = sink.got.slice(seen).map((r) => r.value);
      for (let v = 1; v <= 5; v++) assert.ok(values.includes(v), `value ${v} kept: ${values}`);
      const times = sink.got.map((r) => r.timestamp);
      assert.deepEqual(times, [...times].sort((a, b) => a - b), "in the order read");
      assert.ok(adapter.status().readings > committed);
      assert.equal(adapter.status().dropped, 0);
    } finally {
      await adapter.stop();
    }
  } finally {
    await server.stop();
  }
});

for (const framing of ["tcp", "rtu+tcp"] as const) {
  Deno.test(`modbus ${framing}: a late answer is never taken for the next request's`, async () => {
    const server = await startModbusServer({ framing: framing === "tcp" ? "socket" : "rtu" });
    const sink = recordingSink();
    try {
      await server.set("holding", 0, [111]);
      await server.set("holding", 10, [222]);
      // A answers just after its timeout (300 ms); B answers slowly but in time,
      // so A's late answer arrives while B's request waits, unless guarded. RTU
      // has no transaction id: the guard holds the line for one more timeout,
      // so the margin (270 ms) must cover a loaded machine's scheduling delays.
      await server.fault("holding", 0, 0, 330);
      await server.fault("holding", 10, 0, 60);
      const adapter = modbusAdapter({
        url: server.url,
        timeout_ms: 300,
        points: [{ metric: "a", address: 0 }, { metric: "b", address: 10 }],
      });
      await adapter.start(sink);
      try {
        await until(
          "ten readings of b",
          () => sink.got.filter((r) => r.metric === "b").length >= 10,
          30_000,
        );
        const b = sink.got.filter((r) => r.metric === "b").map((r) => r.value);
        assert.deepEqual([...new Set(b)], [222], "b only ever reads its own register");
        const a = adapter.status().points.find((p) => p.metric === "a")!;
        assert.equal(a.last_error?.kind, "timeout");
        assert.ok(sink.got.every((r) => r.metric !== "a" || r.value === 111));
      } finally {
        await adapter.stop();
      }
    } finally {
      await server.stop();
    }
  });
}
