import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../runtime/mod.ts";
import { settings } from "../../runtime/schema.ts";
import { runCli } from "../_helpers/edged.ts";

Deno.test("zero configuration gives the embedded defaults", async () => {
  const cfg = await loadConfig({}, {});
  assert.equal(cfg.data_dir, "./data");
  assert.equal(cfg.listen, "127.0.0.1:8080");
  assert.equal(cfg.api_token, undefined);
  assert.equal(cfg.http.body_limit_bytes, 1024 * 1024);
  assert.equal(cfg.mqtt.url, undefined);
  assert.equal(cfg.update.url, undefined);
  assert.match(cfg.device_id, /^[A-Za-z0-9][A-Za-z0-9._-]*$/);
});

Deno.test("file < environment < flags", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/edged.toml`;
  await Deno.writeTextFile(
    file,
    `data_dir = "/from/file"\nlisten = "127.0.0.1:1111"\ndevice_id = "file-dev"\n[http]\nmax_batch = 10\n[mqtt]\nurl = "mqtt://file:1883"\n`,
  );
  const cfg = await loadConfig({ config: file, listen: "127.0.0.1:3333" }, {
    EDGED_LISTEN: "127.0.0.1:2222",
    EDGED_DEVICE_ID: "env-dev",
    EDGED_HTTP_MAX_BATCH: "20",
    EDGED_MQTT_FORWARD_READINGS: "false",
    EDGED_MQTT_SUBSCRIBE: "a/#, b/+",
  });
  assert.equal(cfg.data_dir, "/from/file");
  assert.equal(cfg.listen, "127.0.0.1:3333");
  assert.equal(cfg.device_id, "env-dev");
  assert.equal(cfg.http.max_batch, 20);
  assert.equal(cfg.mqtt.url, "mqtt://file:1883");
  assert.equal(cfg.mqtt.forward_readings, false);
  assert.deepEqual(cfg.mqtt.subscribe, ["a/#", "b/+"]);
});

Deno.test("unknown or invalid settings are named with their source", async () => {
  const dir = await Deno.makeTempDir();
  const bad = async (toml: string, env: Record<string, string>, pattern: RegExp) => {
    const file = `${dir}/c.toml`;
    await Deno.writeTextFile(file, toml);
    const err = await loadConfig({ config: file }, env).then(
      () => assert.fail("accepted"),
      (e) => e,
    );
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, pattern);
  };
  await bad(`colour = "red"`, {}, /unknown setting 'colour' in .*c\.toml/);
  await bad(`[http]\nmax_batchh = 3`, {}, /unknown setting 'http\.max_batchh'/);
  await bad(`[http]\nmax_batch = "lots"`, {}, /setting 'http\.max_batch' \(in .*\): .*number/);
  await bad(`listen = "nowhere"`, {}, /setting 'listen'.*HOST:PORT/);
  await bad(``, { EDGED_HTTP_MAX_BATCH: "0" }, /http\.max_batch' \(from EDGED_HTTP_MAX_BATCH\)/);
  await bad(``, { EDGED_LISTEN_PORT: "1" }, /unknown environment setting EDGED_LISTEN_PORT/);
  await bad(``, { EDGED_MQTT_URL: "http://x" }, /mqtt\.url.*mqtt:\/\//);
  await bad(``, { EDGED_API_TOKEN: "short" }, /api_token.*16/);
  await bad(`this is = not toml =`, {}, /not valid TOML/);
  await bad(
    `[store]\nmax_pending_readings = 1000\n[modules]\nmax_lag = 5000`,
    {},
    /setting 'modules\.max_lag' \(in .*\): 5000 is above store\.max_pending_readings \(1000\)/,
  );
});

Deno.test("modules.max_lag defaults to 100000, or the pending cap when that is smaller", async () => {
  assert.equal((await loadConfig({}, {})).modules.max_lag, 100_000);
  const small = await loadConfig({}, { EDGED_STORE_MAX_PENDING_READINGS: "500" });
  assert.equal(small.modules.max_lag, 500);
  const set = await loadConfig({}, { EDGED_MODULES_MAX_LAG: "300" });
  assert.equal(set.modules.max_lag, 300);
});

Deno.test("every setting has an EDGED_ environment variable", () => {
  const envs = settings().map((s) => s.env);
  for (
    const name of [
      "EDGED_DATA_DIR",
      "EDGED_LISTEN",
      "EDGED_API_TOKEN",
      "EDGED_DEVICE_ID",
      "EDGED_MQTT_URL",
      "EDGED_UPDATE_URL",
    ]
  ) assert.ok(envs.includes(name), name);
});

Deno.test("CLI: bad configuration exits 2 with the setting named, before listening", async () => {
  const dir = await Deno.makeTempDir();
  const res = await runCli(["run", "--data-dir", dir, "--listen", "127.0.0.1:0"], {
    EDGED_HTTP_BODY_LIMIT_BYTES: "-1",
  });
  assert.equal(res.code, 2);
  assert.match(res.stderr, /http\.body_limit_bytes.*EDGED_HTTP_BODY_LIMIT_BYTES/);
  assert.equal(res.stdout, "", "nothing started");
  const entries = [...Deno.readDirSync(dir)];
  assert.deepEqual(entries, [], "a bad configuration writes nothing");
});

Deno.test("CLI: version, help and usage errors", async () => {
  const v = await runCli(["version", "--json"]);
  assert.equal(v.code, 0);
  const info = JSON.parse(v.stdout);
  assert.match(info.version, /^\d+\.\d+\.\d+/);
  assert.equal(info.target, Deno.build.target);
  const plain = await runCli(["version"]);
  assert.match(plain.stdout, /^edged \d+\.\d+\.\d+ \(x86_64|aarch64/);
  for (const args of [["--help"], ["run", "--help"], ["version", "--help"]]) {
    const h = await runCli(args);
    assert.equal(h.code, 0, args.join(" "));
    assert.match(h.stdout, /Usage: edged/);
  }
  const bad = await runCli(["frobnicate"]);
  assert.equal(bad.code, 2);
  const badFlag = await runCli(["run", "--no-such-flag"]);
  assert.equal(badFlag.code, 2);
  assert.match(badFlag.stderr, /unknown option/);
});
