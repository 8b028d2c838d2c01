/**
 * The models' service loads when first needed (issue 12, idle memory): edged
 * runs with an import map whose `sandbox/nn/service.ts` is a module that
 * throws when it is evaluated. Idle, edged becomes ready and its metrics show
 * a stopped engine; the first models API call loads the service (and so
 * fails here on exactly that module). Then, in process: the component answers
 * as a service nothing has used until its first use builds the real one.
 */
import assert from "node:assert/strict";
import { Metrics } from "../../../runtime/mod.ts";
import { EngineError, modelsComponent } from "../../../sandbox/nn/mod.ts";
import { startEdged } from "../../_helpers/edged.ts";
import {
  configWithThrowingImport,
  IMPORT_MAP_TEST,
  WITH_CONFIG,
} from "../../_helpers/throwing_import.ts";

const SERVICE = new URL("../../../sandbox/nn/service.ts", import.meta.url).href;

Deno.test(
  "models: an idle edged never loads the models' service; the first models call does",
  IMPORT_MAP_TEST,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "edged-nn-lazy-" });
    const CFG = await configWithThrowingImport(
      dir,
      SERVICE,
      "sandbox/nn/service.ts",
      "export class NnService {}",
    );
    try {
      const edged = await startEdged({ env: { CFG }, wrapper: WITH_CONFIG });
      try {
        const ready = await fetch(`${edged.url}/readyz`);
        assert.equal(ready.status, 200, await ready.text());
        const metrics = await (await fetch(`${edged.url}/metrics`)).text();
        assert.match(metrics, /^edged_nn_engine_running 0$/m);
        assert.match(metrics, /^edged_nn_engine_crashes_total 0$/m);
        const models = await edged.api("/api/v1/models");
        assert.equal(models.status, 500);
        await models.body?.cancel();
        assert.ok(
          edged.lines.some((l) => l.includes("sandbox/nn/service.ts was loaded")),
          edged.lines.join("\n"),
        );
      } finally {
        await edged.stop();
        await Deno.remove(edged.dataDir, { recursive: true });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("models: the lazy service answers as an unused one, then builds the service on first use", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "edged-nn-lazy-unit-" });
  try {
    const models = modelsComponent({ dataDir, metrics: new Metrics() });
    const nn = models.nn;
    assert.equal(nn.running, false);
    assert.deepEqual(nn.crashCounts, { crashes: 0, restarts: 0 });
    const idle = await nn.engineStatus();
    assert.equal(idle.state, "stopped");
    assert.equal(idle.running, false);
    nn.release(1); // nothing admitted: nothing to do
    nn.laneGone(1);
    assert.deepEqual(await nn.list(), []);
    const service = await nn.open();
    assert.strictEqual(await nn.open(), service, "built once");
    assert.deepEqual(await nn.engineStatus(), await service.engineStatus());
    await models.stop();
    await assert.rejects(nn.admit(1, 1, [], "m"), EngineError);

    // Stopped before its first use: the service built afterwards is stopped too.
    const late = modelsComponent({ dataDir });
    await late.stop();
    await assert.rejects(late.nn.admit(1, 1, [], "m"), EngineError);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
