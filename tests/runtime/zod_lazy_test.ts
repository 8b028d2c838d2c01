/**
 * zod is loaded only for what needs it (issue 12, idle memory): edged runs
 * with an import map whose `zod` is a module that throws when it is
 * evaluated. With a configuration its plain rules pass and no module
 * installed, edged becomes ready; a configuration the rules do not pass goes
 * to the zod schema, and so fails on exactly that module. (That the schema
 * still judges such a configuration with its own messages: config_test.ts.)
 */
import assert from "node:assert/strict";
import { MAIN, RUN_FLAGS, startEdged } from "../_helpers/edged.ts";
import {
  configWithThrowingImport,
  IMPORT_MAP_TEST,
  WITH_CONFIG,
} from "../_helpers/throwing_import.ts";

Deno.test(
  "config: an idle edged never loads zod; a configuration the rules refuse loads it",
  IMPORT_MAP_TEST,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "edged-zod-lazy-" });
    const CFG = await configWithThrowingImport(dir, "zod", "zod", "export const z = {};");
    try {
      const idle = await startEdged({
        env: { CFG, EDGED_MQTT_SUBSCRIBE: "a/#", EDGED_HTTP_MAX_BATCH: "500" },
        wrapper: WITH_CONFIG,
      });
      try {
        const res = await fetch(`${idle.url}/readyz`);
        assert.equal(res.status, 200, await res.text());
        const modules = await idle.api("/api/v1/modules");
        assert.equal(modules.status, 200);
        assert.deepEqual((await modules.json()).modules, []);
      } finally {
        assert.equal(await idle.stop(), 0);
        await Deno.remove(idle.dataDir, { recursive: true });
      }

      const data = await Deno.makeTempDir({ prefix: "edged-zod-lazy-data-" });
      try {
        const out = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--config",
            CFG,
            ...RUN_FLAGS,
            MAIN,
            "run",
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
          ],
          env: { NO_COLOR: "1", EDGED_HTTP_MAX_BATCH: "0" },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.notEqual(out.code, 0);
        assert.match(new TextDecoder().decode(out.stderr), /zod was loaded/);
        assert.deepEqual([...Deno.readDirSync(data)], [], "nothing started");
      } finally {
        await Deno.remove(data, { recursive: true });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
