/**
 * `[[adapters.opcua]]` blocks through the real configuration loader: the
 * issue's example (with a pinned server certificate) is accepted with its
 * defaults, and every bad key stops the start naming the setting and the
 * block; edged itself exits 2 with that message.
 */
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../runtime/mod.ts";
import { runCli } from "../_helpers/edged.ts";

const PIN = "94031fd9c05adf0d94078ce13e46f618f873cbeb0cfe45c844e14f27016615b0";

const EXAMPLE = `
[[adapters.opcua]]
name = "line2"
endpoint = "opc.tcp://127.0.0.1:4840/UA/Line2"
device_id = "line-2"
security_mode = "SignAndEncrypt" # None | Sign | SignAndEncrypt
security_policy = "Basic256Sha256"
server_certificate_sha256 = "${PIN}"
username = "operator"
password = "s3cret"
publishing_interval_ms = 500

[[adapters.opcua.points]]
metric = "speed"
node_id = "ns=1;s=Speed"
writable = false
`;

async function load(toml: string) {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/edged.toml`;
  await Deno.writeTextFile(file, toml);
  try {
    return await loadConfig({ config: file }, {});
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function refused(toml: string, pattern: RegExp) {
  const err = await load(toml).then(() => null, (e) => e);
  assert.ok(err instanceof ConfigError, `accepted:\n${toml}`);
  assert.match(err.message, pattern);
}

/** The example with `key = value` lines replaced (value undefined: removed) or added. */
function edit(changes: Record<string, string | undefined>, point = ""): string {
  const [adapter, points] = EXAMPLE.split("[[adapters.opcua.points]]");
  const lines = adapter.split("\n").filter((l) => {
    const key = l.split(" ")[0];
    return !(key in changes);
  });
  for (const [k, v] of Object.entries(changes)) if (v !== undefined) lines.push(`${k} = ${v}`);
  return `${lines.join("\n")}\n[[adapters.opcua.points]]${points}${point}`;
}

Deno.test("opcua config: the issue's example, and the defaults", async () => {
  const cfg = await load(EXAMPLE);
  assert.deepEqual(cfg.adapters.opcua, [{
    name: "line2",
    endpoint: "opc.tcp://127.0.0.1:4840/UA/Line2",
    device_id: "line-2",
    security_mode: "SignAndEncrypt",
    security_policy: "Basic256Sha256",
    server_certificate_sha256: PIN,
    username: "operator",
    password: "s3cret",
    publishing_interval_ms: 500,
    queue_size: 10,
    timeout_ms: 10_000,
    reconnect_min_ms: 500,
    reconnect_max_ms: 30_000,
    points: [{ metric: "speed", node_id: "ns=1;s=Speed", writable: false }],
  }]);
  // Secure by default: a block without security settings is SignAndEncrypt.
  const minimal = await load(`
[[adapters.opcua]]
name = "m"
endpoint = "opc.tcp://plc:4840"
server_certificate_sha256 = "${PIN.toUpperCase().match(/../g)!.join(":")}"
[[adapters.opcua.points]]
metric = "x"
node_id = "i=2258"
`);
  assert.equal(minimal.adapters.opcua[0].security_mode, "SignAndEncrypt");
  assert.equal(minimal.adapters.opcua[0].security_policy, "Basic256Sha256");
});

Deno.test("opcua config: each bad setting is named, with its adapter and point", async () => {
  const at = (key: string) =>
    new RegExp(`setting 'adapters\\.opcua\\[0\\]\\.${key}'.*\\[adapter 'line2'`);
  await refused(edit({ endpoint: '"http://plc:4840"' }), at("endpoint"));
  await refused(edit({ security_mode: '"Encrypt"' }), at("security_mode"));
  await refused(edit({ security_policy: '"Basic128Rsa15"' }), at("security_policy"));
  await refused(edit({ security_policy: '"None"' }), /security_policy.*must not be "None"/);
  // Never trusted blindly: a secure mode needs the server certificate pinned or a trust directory.
  // The rule names a setting that is not there: the message says where its block came from.
  await refused(
    edit({ server_certificate_sha256: undefined }),
    /server_certificate_sha256' \(in [^)]*edged\.toml\).*needs the server certificate trusted explicitly/,
  );
  await refused(edit({ server_certificate_sha256: '"abc"' }), at("server_certificate_sha256"));
  await refused(edit({ password: undefined }), /'adapters\.opcua\[0\]\.password'.*go together/);
  // Credentials never go over an unverified channel.
  await refused(
    edit({ security_mode: '"None"', security_policy: '"None"' }),
    /'adapters\.opcua\[0\]\.username'.*credentials need security_mode/,
  );
  await refused(edit({ certificate_file: '"/etc/c.pem"' }), at("private_key_file"));
  await refused(edit({ publishing_interval_ms: "1" }), at("publishing_interval_ms"));
  await refused(edit({ colour: '"blue"' }), /unknown setting 'adapters\.opcua\.0\.colour'|colour/);
  await refused(
    edit({}, '\n[[adapters.opcua.points]]\nmetric = "t"\nnode_id = "Speed"\n'),
    /adapters\.opcua\[0\]\.points\[1\]\.node_id.*\[adapter 'line2', point 't'\].*NodeId/,
  );
  await refused(
    edit({}, '\n[[adapters.opcua.points]]\nmetric = "speed"\nnode_id = "ns=1;s=Other"\n'),
    /points\[1\]\.metric.*'speed' is used by another point/,
  );
  // Adapter names are unique across kinds.
  await refused(
    EXAMPLE + '\n[[adapters.modbus]]\nname = "line2"\nurl = "tcp://127.0.0.1:502"\n' +
      '[[adapters.modbus.points]]\nmetric = "t"\naddress = 0\n',
    /adapters\.opcua\[0\]\.name.*'line2' is already the name of adapters\.modbus\[0\]/,
  );
});

Deno.test("opcua config: edged run refuses a bad block with exit 2, naming the setting", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/edged.toml`, edit({ server_certificate_sha256: undefined }));
    const r = await runCli(["run", "--config", `${dir}/edged.toml`, "--data-dir", `${dir}/data`]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /adapters\.opcua\[0\]\.server_certificate_sha256/);
    // Nothing was started or written.
    await assert.rejects(Deno.stat(`${dir}/data/edged.db`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
