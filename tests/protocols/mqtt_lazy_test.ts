/**
 * npm:mqtt is loaded only when a broker is configured (issue 12, idle memory):
 * edged runs with an import map whose `mqtt` is a module that throws when it
 * is evaluated. Without `mqtt.url` edged becomes ready; with one, its MQTT
 * component fails to start on exactly that module. (That the real client
 * still connects when configured: mqtt_connect_test.ts and the others.)
 */
import assert from "node:assert/strict";
import { startEdged } from "../_helpers/edged.ts";
import {
  configWithThrowingImport,
  IMPORT_MAP_TEST,
  WITH_CONFIG,
} from "../_helpers/throwing_import.ts";

Deno.test(
  "mqtt: without a broker edged never loads npm:mqtt; with one it loads it on start",
  IMPORT_MAP_TEST,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "edged-mqtt-lazy-" });
    const CFG = await configWithThrowingImport(dir, "mqtt", "npm:mqtt", "export default {};");
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
  },
);
