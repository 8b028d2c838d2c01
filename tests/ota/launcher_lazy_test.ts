/**
 * The launcher (`edged run --supervise`) loads only what supervising needs
 * (ARCHITECTURE.md, "Start-up and shutdown"): run with an import map in which
 * Hono (the runtime's HTTP API, through runtime/mod.ts), LogTape and the TUF
 * client's hashes (ota/update/mod.ts) are modules that throw when they are
 * evaluated, it still starts its edged (which runs with the project's own
 * deno.json), logs in JSON lines, and stops cleanly.
 */
import assert from "node:assert/strict";
import { startEdged } from "../_helpers/edged.ts";
import {
  configWithThrowingImports,
  IMPORT_MAP_TEST,
  WITH_CONFIG,
} from "../_helpers/throwing_import.ts";

Deno.test("launcher: never loads Hono, LogTape or the TUF client", IMPORT_MAP_TEST, async () => {
  const dir = await Deno.makeTempDir({ prefix: "edged-launcher-lazy-" });
  const CFG = await configWithThrowingImports(dir, [
    { specifier: "hono", what: "hono", exports: "export class Hono {}" },
    {
      specifier: "@logtape/logtape",
      what: "LogTape",
      exports: "export const getAnsiColorFormatter = () => () => '';",
    },
    {
      specifier: "@noble/hashes/sha2.js",
      what: "the TUF client",
      exports: "export const sha256 = 0, sha384 = 0, sha512 = 0;",
    },
  ]);
  try {
    const launcher = await startEdged({
      args: ["--supervise"],
      env: { CFG },
      wrapper: WITH_CONFIG,
    });
    try {
      const res = await fetch(`${launcher.url}/readyz`);
      assert.equal(res.status, 200, await res.text());
      const started = launcher.lines.map((l) => JSON.parse(l))
        .find((r) => r.logger === "edged.supervisor");
      assert.equal(started?.level, "INFO", launcher.lines.join("\n"));
      assert.match(started.message, /^starting /);
    } finally {
      assert.equal(await launcher.stop(), 0);
      await Deno.remove(launcher.dataDir, { recursive: true });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
