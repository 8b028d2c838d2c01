/**
 * As a user: a model added with `edged model add` (offline, before the first
 * start), a bad model refused over the API with the reason, the example C
 * module installed, readings posted, and the model's verdict seen as an
 * alert; the engine runs only while a module granted nn does.
 */
import assert from "node:assert/strict";
import { postJson, runCli, startEdged } from "../../_helpers/edged.ts";

const EXAMPLE = new URL("../../../examples/modules/anomaly-score-c/", import.meta.url).pathname;

Deno.test({
  name: "edged: model add, a bad model gets 422, the example module scores readings into an alert",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "edged-nn-e2e-" });
    try {
      const add = await runCli([
        "model",
        "add",
        "--offline",
        "--data-dir",
        dataDir,
        "--version",
        "1.0.0",
        "window-scorer",
        `${EXAMPLE}window-scorer.onnx`,
      ]);
      assert.equal(add.code, 0, add.stderr);
      assert.equal(JSON.parse(add.stdout).inputs[0].dims.join(","), "1,16");

      const p = await startEdged({ dataDir });
      try {
        let models = await (await p.api("/api/v1/models")).json();
        assert.equal(models.models.length, 1);
        assert.equal(models.engine.running, false, "no module granted nn: no engine");

        const bad = new FormData();
        bad.set("model", new File([new TextEncoder().encode("not onnx")], "bad.onnx"));
        let res = await p.api("/api/v1/models/bad", { method: "PUT", body: bad });
        assert.equal(res.status, 422);
        const err = await res.json();
        assert.equal(err.error.code, "model_invalid");
        assert.match(err.error.details[0], /protobuf parsing failed/);

        const list = await runCli(["model", "list", "--url", p.url, "--token", p.token]);
        assert.equal(list.code, 0, list.stderr);
        assert.match(
          list.stdout,
          /^window-scorer 1\.0\.0 [0-9a-f]{12} 1218 B {2}in window: float32\[1,16\]/,
        );

        const form = new FormData();
        form.set("manifest", await Deno.readTextFile(`${EXAMPLE}manifest.json`));
        form.set("module", new File([await Deno.readFile(`${EXAMPLE}module.wasm`)], "module.wasm"));
        res = await p.api("/api/v1/modules/anomaly-score", { method: "PUT", body: form });
        assert.equal(res.status, 201, await res.text());

        const readings = [...new Array(20).fill(2), 30].map((value) => ({
          device_id: "pump-7",
          metric: "vibration",
          value,
        }));
        for (const r of readings) assert.equal((await postJson(p, r)).status, 202);
        let alert;
        const end = Date.now() + 15_000;
        while (!alert && Date.now() < end) {
          const status = await (await p.api("/api/v1/status")).json();
          alert = status.alerts.find((a: { topic: string }) =>
            a.topic === "alerts/pump-7/vibration/anomaly"
          );
          if (!alert) await new Promise((r) => setTimeout(r, 100));
        }
        assert.ok(alert, "the model's verdict reached the bus as an alert");
        // 15 differences, one of 28: RMS = 28 / sqrt(15).
        assert.ok(Math.abs(alert.payload.score - 28 / Math.sqrt(15)) < 1e-3, JSON.stringify(alert));

        models = await (await p.api("/api/v1/models")).json();
        assert.equal(models.engine.running, true);
        assert.deepEqual(models.models[0].used_by, ["anomaly-score"]);

        const rm = await runCli([
          "model",
          "remove",
          "--url",
          p.url,
          "--token",
          p.token,
          "window-scorer",
        ]);
        assert.equal(rm.code, 0, rm.stderr);
        res = await p.api("/api/v1/models/window-scorer");
        assert.equal(res.status, 404);
        await res.body?.cancel();
      } finally {
        assert.equal(await p.stop(), 0);
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
