/**
 * `[[adapters.modbus]]` blocks through the real configuration loader: the
 * issue's example is accepted with its defaults, and every bad key or point
 * stops the start with a message naming the setting and the block.
 */
import assert from "node:assert/strict";
import { ConfigError, loadConfig, parseModbusUrl } from "../../runtime/mod.ts";
import { adaptersSchema } from "../../runtime/schema.ts";
import { runCli } from "../_helpers/edged.ts";

const EXAMPLE = `
[[adapters.modbus]]
name = "plc1"                    # [a-z0-9-]+, unique
url = "tcp://127.0.0.1:5020"     # or rtu+tcp://host:port
unit_id = 1
device_id = "press-3"            # readings become sensors/press-3/{metric}
poll_ms = 1000
timeout_ms = 500

[[adapters.modbus.points]]
metric = "temperature"
table = "holding"                # holding | input | coil | discrete
address = 0
type = "float32"                 # bool int16 uint16 int32 uint32 float32 float64
word_order = "big"               # big | little (for 32/64-bit types)
scale = 1.0                      # value = raw * scale + offset
offset = 0.0
writable = false
`;

async function load(toml: string, env: Record<string, string> = {}) {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/edged.toml`;
  await Deno.writeTextFile(file, toml);
  try {
    return await loadConfig({ config: file }, env);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function refused(toml: string, pattern: RegExp, env: Record<string, string> = {}) {
  const err = await load(toml, env).then(() => null, (e) => e);
  assert.ok(err instanceof ConfigError, `accepted:\n${toml}`);
  assert.match(err.message, pattern);
}

/** One adapter block with one point; `point` lines replace the defaults metric "t", address 0. */
function block(extra = "", point = ""): string {
  const lines = point.split("\n").filter(Boolean);
  const has = (key: string) => lines.some((l) => l.startsWith(`${key} `));
  if (!has("metric")) lines.unshift('metric = "t"');
  if (!has("address")) lines.push("address = 0");
  return `[[adapters.modbus]]\nname = "plc1"\nurl = "tcp://127.0.0.1:502"\n${extra}\n` +
    `[[adapters.modbus.points]]\n${lines.join("\n")}\n`;
}

Deno.test("adapters config: the issue's example, and the defaults of a minimal block", async () => {
  const cfg = await load(EXAMPLE);
  assert.deepEqual(cfg.adapters.modbus, [{
    name: "plc1",
    url: "tcp://127.0.0.1:5020",
    unit_id: 1,
    device_id: "press-3",
    poll_ms: 1000,
    timeout_ms: 500,
    points: [{
      metric: "temperature",
      table: "holding",
      address: 0,
      type: "float32",
      word_order: "big",
      scale: 1,
      offset: 0,
      writable: false,
    }],
  }]);
  const min = (await load(block())).adapters.modbus[0];
  assert.equal(min.unit_id, 1);
  assert.equal(min.poll_ms, 1000);
  assert.equal(min.timeout_ms, 500);
  assert.equal(min.device_id, undefined);
  assert.deepEqual(min.points[0], {
    metric: "t",
    table: "holding",
    address: 0,
    word_order: "big",
    scale: 1,
    offset: 0,
    writable: false,
  });
  assert.deepEqual((await load("")).adapters, { modbus: [], opcua: [] });
});

Deno.test("adapters config: bad keys and points are named with their block", async () => {
  await refused(
    block("colour = 1"),
    /unknown setting 'adapters\.modbus\[0\]\.colour'.*\[adapter 'plc1'\]/,
  );
  await refused(
    block("", "colour = 1"),
    /unknown setting 'adapters\.modbus\[0\]\.points\[0\]\.colour'.*\[adapter 'plc1', point 't'\]/,
  );
  await refused(
    block("", 'type = "float16"'),
    /setting 'adapters\.modbus\[0\]\.points\[0\]\.type'.*\[adapter 'plc1', point 't'\]/,
  );
  await refused(
    block("", 'table = "coil"\ntype = "int16"'),
    /points\[0\]\.type.*a coil point is a bool/,
  );
  await refused(
    block("", 'table = "input"\nwritable = true'),
    /writable.*input registers are read-only/,
  );
  await refused(block("", 'table = "discrete"\nwritable = true'), /discrete inputs are read-only/);
  await refused(block("", 'table = "coil"\nscale = 2.0'), /bool point takes no scale/);
  await refused(block("", "scale = 0.0"), /points\[0\]\.scale.*non-zero/);
  await refused(block("", "address = 70000"), /points\[0\]\.address/);
  await refused(
    block("", 'type = "float64"\naddress = 65533'),
    /spans 4 registers, past address 65535/,
  );
  await refused(block("", "address = -1"), /points\[0\]\.address/);
  await refused(block("", 'metric = "a/b"'), /points\[0\]\.metric/);
  await refused(
    block() + '[[adapters.modbus.points]]\nmetric = "t"\naddress = 1\n',
    /points\[1\]\.metric.*'t' is already points\[0\]/,
  );
  await refused(block("unit_id = 256"), /adapters\.modbus\[0\]\.unit_id/);
  await refused(block("poll_ms = 0"), /adapters\.modbus\[0\]\.poll_ms/);
  await refused(block('device_id = "a b"'), /adapters\.modbus\[0\]\.device_id/);
  await refused(
    '[[adapters.modbus]]\nname = "plc1"\nurl = "tcp://127.0.0.1:502"\n',
    /adapters\.modbus\[0\]\.points.*expected array/,
  );
  await refused(block().replace('"plc1"', '"PLC_1"'), /adapters\.modbus\[0\]\.name.*a-z 0-9/);
  await refused(
    block() + block(),
    /adapters\.modbus\[1\]\.name.*'plc1' is already the name of adapters\.modbus\[0\]/,
  );
  await refused(
    block() + block().replace('"plc1"', '"plc2"').replace("\n\n", '\ndevice_id = "plc1"\n'),
    /device 'plc1' metric 't' is already read by adapters\.modbus\[0\]/,
  );
  await refused(
    block().replace("tcp://127.0.0.1:502", "http://x"),
    /url.*tcp:\/\/, rtu\+tcp:\/\/ or rtu:\/\//,
  );
  await refused(
    block().replace("tcp://127.0.0.1:502", "tcp://host:502/path"),
    /nothing after the port/,
  );
  await refused(block().replace("tcp://127.0.0.1:502", "rtu:///etc/passwd"), /under \/dev\//);
  await refused(
    block("unit_id = 0").replace("tcp://127.0.0.1:502", "rtu+tcp://127.0.0.1:502"),
    /unit_id.*RTU unit id is from 1 to 247/,
  );
  // Blocks exist only in the file: no environment variable reaches them.
  await refused("", /unknown environment setting EDGED_ADAPTERS_MODBUS/, {
    EDGED_ADAPTERS_MODBUS: "x",
  });
});

Deno.test("adapters config: URLs", () => {
  assert.deepEqual(parseModbusUrl("tcp://10.0.0.5"), {
    kind: "tcp",
    framing: "tcp",
    hostname: "10.0.0.5",
    port: 502,
  });
  assert.deepEqual(parseModbusUrl("rtu+tcp://[::1]:4001"), {
    kind: "tcp",
    framing: "rtu",
    hostname: "::1",
    port: 4001,
  });
  assert.deepEqual(parseModbusUrl("rtu:///dev/ttyUSB0?baud=19200&parity=none&stop_bits=2"), {
    kind: "serial",
    framing: "rtu",
    path: "/dev/ttyUSB0",
    baud: 19200,
    parity: "none",
    stopBits: 2,
  });
  assert.deepEqual(parseModbusUrl("rtu:///dev/ttyS1"), {
    kind: "serial",
    framing: "rtu",
    path: "/dev/ttyS1",
    baud: 9600,
    parity: "even",
    stopBits: 1,
  });
  assert.throws(() => parseModbusUrl("rtu:///dev/ttyS1?baud=1234"), /baud must be one of/);
  assert.throws(() => parseModbusUrl("rtu:///dev/ttyS1?speed=9600"), /unknown serial parameter/);
  assert.throws(() => parseModbusUrl("tcp://h:0"), /port/);
});

Deno.test("adapters config: edged run with a bad point exits 2 naming it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/edged.toml`, block("", 'table = "coil"\ntype = "float32"'));
    const out = await runCli(["run", "--config", `${dir}/edged.toml`, "--data-dir", `${dir}/data`]);
    assert.equal(out.code, 2, out.stderr + out.stdout);
    assert.match(out.stderr + out.stdout, /adapters\.modbus\[0\]\.points\[0\]\.type/);
    assert.match(out.stderr + out.stdout, /a coil point is a bool/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("adapters config: at most 100,000 points in all adapters together", () => {
  const adapter = (n: number) => ({
    name: `a${n}`,
    url: "tcp://127.0.0.1:502",
    points: Array.from({ length: 10_000 }, (_, i) => ({ metric: `p${i}`, address: i })),
  });
  const ten = Array.from({ length: 10 }, (_, n) => adapter(n));
  assert.equal(adaptersSchema.safeParse({ modbus: ten }).success, true);
  const eleven = adaptersSchema.safeParse({ modbus: [...ten, adapter(10)] });
  assert.equal(eleven.success, false);
  assert.deepEqual(eleven.error!.issues.map((i) => [i.path.join("."), i.message]), [
    ["modbus.10.points", "more than 100000 points in all adapters together"],
  ]);
});
