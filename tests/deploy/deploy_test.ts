/**
 * The shipped service files agree with the code they run: the unit's restart
 * policy matches the launcher's exit codes, its writable path is the data
 * directory it sets, systemd accepts it, and the example configuration loads.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../../runtime/mod.ts";
import { EXIT } from "../../lib/mod.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const UNIT = `${ROOT}deploy/edged.service`;

/** `Key=value` lines of the unit, by key (a key may repeat). */
async function unitKeys(): Promise<Map<string, string[]>> {
  const keys = new Map<string, string[]>();
  for (const line of (await Deno.readTextFile(UNIT)).split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    keys.set(m[1], [...(keys.get(m[1]) ?? []), m[2]]);
  }
  return keys;
}

Deno.test("the unit runs the launcher and restarts it on everything but a clean stop or bad config", async () => {
  const k = await unitKeys();
  assert.match(k.get("ExecStart")![0], /^\/usr\/local\/bin\/edged run --supervise /);
  assert.deepEqual(k.get("Restart"), ["on-failure"]);
  assert.deepEqual(k.get("RestartPreventExitStatus"), [String(EXIT.USAGE)]);
  // 75 is the launcher's business (ota/update/supervisor.ts); systemd must not
  // treat it as a success that ends the service.
  assert.ok(!(k.get("SuccessExitStatus") ?? []).join(" ").includes(String(EXIT.RESTART)));
  assert.deepEqual(k.get("KillMode"), ["mixed"]);
});

Deno.test("the unit's writable path is the data directory it sets, and it is hardened", async () => {
  const k = await unitKeys();
  const env = (k.get("Environment") ?? []).find((e) => e.startsWith("EDGED_DATA_DIR="));
  assert.equal(env, "EDGED_DATA_DIR=/var/lib/edged");
  assert.deepEqual(k.get("ReadWritePaths"), ["/var/lib/edged"]);
  assert.deepEqual(k.get("StateDirectory"), ["edged"]);
  for (const key of ["NoNewPrivileges", "ProtectHome", "PrivateTmp", "RestrictSUIDSGID"]) {
    assert.deepEqual(k.get(key), ["yes"], key);
  }
  assert.deepEqual(k.get("ProtectSystem"), ["strict"]);
  // V8 needs writable and executable memory for its JIT and for WebAssembly.
  assert.equal(k.get("MemoryDenyWriteExecute"), undefined);
});

Deno.test({
  name: "systemd-analyze accepts the unit",
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      // verify checks that ExecStart exists: point it at a stand-in executable.
      const bin = `${dir}/edged`;
      await Deno.writeTextFile(bin, "#!/bin/sh\n");
      await Deno.chmod(bin, 0o755);
      const unit = (await Deno.readTextFile(UNIT)).replace("/usr/local/bin/edged", bin);
      await Deno.writeTextFile(`${dir}/edged.service`, unit);
      const out = await new Deno.Command("systemd-analyze", {
        args: ["verify", `${dir}/edged.service`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
      // Messages about the host's own units are not ours.
      const ours = text.split("\n").filter((l) => l.includes("edged.service"));
      assert.deepEqual(ours, [], text);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("the example configuration loads", async () => {
  const config = await loadConfig({
    config: `${ROOT}deploy/edged.toml`,
    dataDir: "/var/lib/edged",
  });
  assert.equal(config.listen, "127.0.0.1:8080");
  assert.equal(config.mqtt.outbox_policy, "refuse-new");
  assert.equal(config.update.max_boot_attempts, 3);
});
