/**
 * What the README promises, end to end: a real edged process pointed by its
 * configuration file at node-opcua's server over Basic256Sha256
 * SignAndEncrypt, with the server's certificate pinned and a user name,
 * turns the server's data changes into durable readings that reach the
 * broker (Mosquitto) and the API; the example C module level-control closes
 * the loop by writing a Boolean node back through `devices/tank1/valve/set`.
 */
import assert from "node:assert/strict";
import { type EdgedProcess, startEdged } from "../_helpers/edged.ts";
import { startMosquitto, subscribe } from "../_helpers/mosquitto.ts";
import { startOpcuaServer, trustOnServer } from "../_helpers/opcua.ts";
import { certificates } from "./_opcua.ts";
import { until } from "../_helpers/until.ts";

const MODULE = new URL("../../examples/modules/level-control-c/", import.meta.url).pathname;

interface AdapterJson {
  name: string;
  kind: string;
  state: string;
  readings: number;
  security_mode: string;
  client_certificate_sha256: string;
  points: { metric: string; last_value: number | null; last_time: number | null; writes: number }[];
}

async function adapters(edged: EdgedProcess): Promise<AdapterJson[]> {
  const res = await edged.api("/api/v1/adapters");
  assert.equal(res.status, 200);
  return (await res.json()).adapters;
}

Deno.test("opcua e2e: SignAndEncrypt values reach the log, the API and the broker; a module writes a node back", async () => {
  const certs = await certificates();
  await trustOnServer(certs.dir, certs.client.cert);
  const server = await startOpcuaServer({
    dir: certs.dir,
    modes: ["SignAndEncrypt"],
    users: { edged: "pa55word" },
    anonymous: false,
    tickMs: 0,
  });
  const broker = await startMosquitto();
  let edged: EdgedProcess | null = null;
  try {
    await Deno.writeTextFile(
      `${certs.dir}/edged.toml`,
      `
[[adapters.opcua]]
name = "tank1"
endpoint = "${server.endpoint}"
security_mode = "SignAndEncrypt"
security_policy = "Basic256Sha256"
server_certificate_sha256 = "${certs.server.sha256}"
certificate_file = "${certs.client.cert}"
private_key_file = "${certs.client.key}"
username = "edged"
password = "pa55word"
publishing_interval_ms = 100

[[adapters.opcua.points]]
metric = "level"
node_id = "ns=1;s=TankLevel"

[[adapters.opcua.points]]
metric = "valve"
node_id = "ns=1;s=Valve"
writable = true
`,
    );
    const sub = await subscribe(broker, "edged/gw-1/up/sensors/tank1/#");
    edged = await startEdged({
      args: ["--config", `${certs.dir}/edged.toml`],
      env: { EDGED_DEVICE_ID: "gw-1", EDGED_MQTT_URL: broker.url },
      timeoutMs: 60_000,
    });
    const fd = new FormData();
    fd.append("manifest", await Deno.readTextFile(`${MODULE}manifest.json`));
    fd.append("module", new Blob([await Deno.readFile(`${MODULE}module.wasm`)]), "module.wasm");
    const put = await edged.api("/api/v1/modules/level-control", { method: "PUT", body: fd });
    assert.equal(put.status, 201, await put.text());

    // A change on the server, with the source timestamp the server gave it, at the broker.
    const { ts } = await server.command({ set: "TankLevel", value: 55.5 }) as { ts: number };
    await sub.waitFor(
      (ms) => ms.some((m) => m.topic.endsWith("/level") && JSON.parse(m.payload!).value === 55.5),
      20_000,
      "the level at the broker",
    );
    const level = sub.messages.find((m) =>
      m.topic.endsWith("/level") && JSON.parse(m.payload!).value === 55.5
    )!;
    assert.equal(level.topic, "edged/gw-1/up/sensors/tank1/level");
    assert.equal(JSON.parse(level.payload!).timestamp, ts);

    // The loop: above 80 % the module opens the valve (a Boolean node on the server).
    assert.deepEqual(await server.command({ get: "Valve" }), { value: false });
    await server.command({ set: "TankLevel", value: 85.3 });
    await until(
      "the valve opened",
      async () => (await server.command({ get: "Valve" })).value === true,
      20_000,
    );
    await server.command({ set: "TankLevel", value: 12 });
    await until(
      "the valve closed",
      async () => (await server.command({ get: "Valve" })).value === false,
      20_000,
    );

    const [tank] = await adapters(edged);
    assert.equal(tank.name, "tank1");
    assert.equal(tank.kind, "opcua");
    assert.equal(tank.state, "connected");
    assert.equal(tank.security_mode, "SignAndEncrypt");
    assert.equal(tank.client_certificate_sha256, certs.client.sha256);
    assert.equal(tank.points.find((p) => p.metric === "valve")!.writes, 2);
    const metrics = await (await fetch(`${edged.url}/metrics`)).text();
    assert.match(metrics, /^edged_adapter_readings_total\{adapter="tank1"\} [1-9]/m);
    assert.match(metrics, /^edged_adapter_writes_total\{adapter="tank1",outcome="ok"\} 2$/m);
    const ready = await fetch(`${edged.url}/readyz`);
    assert.equal(ready.status, 200, await ready.text());
    await sub.stop();
  } catch (err) {
    console.error(await server.log());
    throw err;
  } finally {
    await edged?.stop();
    await server.stop();
    await broker.stop();
    await Deno.remove(certs.dir, { recursive: true });
  }
});
