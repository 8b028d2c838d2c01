/**
 * The C example (examples/modules/anomaly-score-c), built here with clang
 * --target=wasm32-wasi and wasi-libc from its source, scores windows of
 * readings with the installed window-scorer model and publishes alerts; its
 * error path when the model is missing; the committed model is what its
 * generator writes.
 */
import assert from "node:assert/strict";
import { windowScorer } from "../../../scripts/nn/models.ts";
import { enc, until } from "../_helpers.ts";
import { nnEnv } from "./_helpers.ts";

const DIR = new URL("../../../examples/modules/anomaly-score-c/", import.meta.url).pathname;

async function buildC(): Promise<Uint8Array> {
  const tmp = await Deno.makeTempDir({ prefix: "edged-nn-c-" });
  try {
    const out = await new Deno.Command("clang", {
      args: [
        "--target=wasm32-wasi",
        "-O2",
        "-mexec-model=reactor",
        "-Wl,--strip-all",
        "-Wl,-z,stack-size=65536",
        "-o",
        `${tmp}/module.wasm`,
        `${DIR}score.c`,
      ],
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    return await Deno.readFile(`${tmp}/module.wasm`);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

const reading = (device: string, value: number) =>
  enc(JSON.stringify({ device_id: device, metric: "vibration", value, timestamp: Date.now() }));

Deno.test("the committed window-scorer.onnx is what its generator writes", async () => {
  assert.deepEqual(await Deno.readFile(`${DIR}window-scorer.onnx`), windowScorer(16).bytes);
});

Deno.test("C example: steady windows pass, a spike publishes an alert with the model's score", async () => {
  const e = await nnEnv();
  try {
    const manifest = JSON.parse(await Deno.readTextFile(`${DIR}manifest.json`));
    delete manifest.sha256; // built here, not the committed bytes
    await e.host.install(manifest, await buildC());
    // Installed before the model: the module loads; scoring says why it cannot run.
    for (let i = 0; i < 15; i++) {
      e.bus.publish("sensors/pump-7/vibration", reading("pump-7", 1), "t");
    }
    await until(() => e.host.status("anomaly-score").messages_in === 15);
    const missing = await e.host.deliver(
      "anomaly-score",
      "sensors/pump-7/vibration",
      reading("pump-7", 1),
    );
    assert.equal(missing.status, 4);
    assert.match(
      missing.logs.map((l) => l.message).join("\n"),
      /window-scorer is not available \(wasi-nn error 8\)/,
    );

    await e.nn.install("window-scorer", await Deno.readFile(`${DIR}window-scorer.onnx`));
    const values: number[] = [];
    const ref = windowScorer(16);
    const send = async (v: number) => {
      values.push(v);
      return await e.host.deliver(
        "anomaly-score",
        "sensors/pump-7/vibration",
        reading("pump-7", v),
      );
    };
    values.push(...new Array(16).fill(1));
    for (let i = 0; i < 20; i++) {
      const out = await send(1 + 0.1 * Math.sin(i));
      assert.equal(out.status, 0, JSON.stringify(out.logs));
      assert.equal(out.published.length, 0, "steady: no alert");
    }
    const out = await send(40);
    assert.equal(out.status, 0);
    assert.equal(out.published.length, 1);
    assert.equal(out.published[0].topic, "alerts/pump-7/vibration/anomaly");
    const alert = JSON.parse(new TextDecoder().decode(out.published[0].payload));
    const expected = ref.reference(Float32Array.from(values.slice(-16)))[0];
    assert.ok(Math.abs(alert.score - expected) < 1e-3 * expected, `${alert.score} vs ${expected}`);
    assert.equal(alert.threshold, 5);
    assert.equal(alert.window, 16);
    assert.equal(e.host.status("anomaly-score").faults.fuel, 0);
  } finally {
    await e.dispose();
  }
});
