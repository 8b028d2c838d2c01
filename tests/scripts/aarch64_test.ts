import assert from "node:assert/strict";
import { smokeTest } from "../../scripts/aarch64.ts";

Deno.test({
  name:
    "aarch64: edged runs on the arm64 Deno under qemu, answers /healthz, ingests and runs a module",
  // `deno task test` installs qemu-user and the arm64 libc first
  // (scripts/provision); without them the test fails naming what is missing.
  async fn() {
    const r = await smokeTest(300);
    assert.equal(r.arch, "aarch64");
    assert.equal(r.healthz, 200);
    assert.equal(r.ingest, 202);
    assert.deepEqual(r.moduleAlerts, ["alerts/arm/temperature"]);
  },
});
