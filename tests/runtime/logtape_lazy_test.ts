/**
 * LogTape is loaded only for the colored text a terminal gets (issue 12, idle
 * memory): edged runs with an import map whose `@logtape/logtape` is a module
 * that throws when it is evaluated. Logging JSON lines (stdout is not a
 * terminal), edged becomes ready and logs as always; asked for text, it fails
 * on exactly that module. (That the text is LogTape's: runtime/log.ts.)
 */
import assert from "node:assert/strict";
import { MAIN, RUN_FLAGS, startEdged } from "../_helpers/edged.ts";
import {
  configWithThrowingImport,
  IMPORT_MAP_TEST,
  WITH_CONFIG,
} from "../_helpers/throwing_import.ts";

Deno.test(
  "log: an edged logging JSON lines never loads LogTape; text output loads it",
  IMPORT_MAP_TEST,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "edged-logtape-lazy-" });
    const CFG = await configWithThrowingImport(
      dir,
      "@logtape/logtape",
      "LogTape",
      "export const getAnsiColorFormatter = () => () => '';",
    );
    try {
      const idle = await startEdged({ env: { CFG }, wrapper: WITH_CONFIG });
      try {
        const res = await fetch(`${idle.url}/readyz`);
        assert.equal(res.status, 200, await res.text());
        const ready = idle.lines.map((l) => JSON.parse(l)).find((r) => /ready/.test(r.message));
        assert.equal(ready?.logger, "edged.runtime", idle.lines.join("\n"));
        assert.equal(ready?.level, "INFO");
      } finally {
        assert.equal(await idle.stop(), 0);
        await Deno.remove(idle.dataDir, { recursive: true });
      }

      const data = await Deno.makeTempDir({ prefix: "edged-logtape-lazy-data-" });
      try {
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "--config", CFG, ...RUN_FLAGS, MAIN, "run", "--data-dir", data],
          env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", EDGED_LOG_FORMAT: "text" },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.notEqual(out.code, 0);
        assert.match(new TextDecoder().decode(out.stderr), /LogTape was loaded/);
      } finally {
        await Deno.remove(data, { recursive: true });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
