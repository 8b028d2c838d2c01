/**
 * npm:mqtt is loaded only when a broker is configured (issue 12, idle memory):
 * edged runs with an import map whose `mqtt` is a module that throws when it
 * is evaluated. Without `mqtt.url` edged becomes ready; with one, its MQTT
 * component fails to start on exactly that module. (That the real client
 * still connects when configured: mqtt_connect_test.ts and the others.)
 */
import assert from "node:assert/strict";
import { startEdged } from "../_helpers/edged.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** A deno.json like the project's, but whose `mqtt` throws on load; in `dir`. */
async function configWithThrowingMqtt(dir: string): Promise<string> {
  await Deno.writeTextFile(
    `${dir}/mqtt_stub.ts`,
    `throw new Error("npm:mqtt was loaded");\nexport default {};\n`,
  );
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  config.imports.mqtt = "./mqtt_stub.ts";
  const path = `${dir}/deno.json`;
  await Deno.writeTextFile(path, JSON.stringify(config));
  // The project's lock (a copy: deno may rewrite it), so nothing is resolved afresh from npm.
  await Deno.copyFile(`${ROOT}deno.lock`, `${dir}/deno.lock`);
  return path;
}

/** Runs deno with `--config CONFIG` before edged's own flags (exec keeps the pid). */
const WITH_CONFIG = ["/bin/sh", "-c", 'd=$0; r=$1; shift; exec "$d" "$r" --config "$CFG" "$@"'];

Deno.test("mqtt: without a broker edged never loads npm:mqtt; with one it loads it on start", async () => {
  const dir = await Deno.makeTempDir({ prefix: "edged-mqtt-lazy-" });
  const CFG = await configWithThrowingMqtt(dir);
  try {
    const idle = await startEdged({ env: { CFG }, wrapper: WITH_CONFIG });
    try {
      const res = await fetch(`${idle.url}/readyz`);
      assert.equal(res.status, 200, await res.text());
    } finally {
      assert.equal(await idle.stop(), 0);
      await Deno.remove(idle.dataDir, { recursive: true });
    }

    const configured = await startEdged({
      env: { CFG, EDGED_MQTT_URL: "mqtt://127.0.0.1:1" },
      wrapper: WITH_CONFIG,
      waitReady: false,
    });
    try {
      const { code } = await configured.exited;
      assert.equal(code, 1);
      assert.ok(
        configured.lines.some((l) => l.includes("npm:mqtt was loaded")),
        configured.lines.join("\n"),
      );
    } finally {
      await configured.stop("SIGKILL");
      await Deno.remove(configured.dataDir, { recursive: true });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
