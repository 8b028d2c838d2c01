/**
 * The inference engine failing: out of memory inside its capped heap during
 * a computation (real: activations larger than nn.memory_bytes), and the
 * engine's Worker dying mid-computation. onnxruntime-web turns every failure
 * a model or an input was found to cause (out of memory, integer division by
 * zero) into an error, so the death is caused by `NnEngine.kill`, which ends
 * the Worker the way a crash of it does.
 */
import assert from "node:assert/strict";
import { mlp } from "../../../scripts/nn/models.ts";
import { Metrics } from "../../../runtime/mod.ts";
import { modelsApi, modelsComponent, NnErrno } from "../../../sandbox/nn/mod.ts";
import { env, manifest, module } from "../_helpers.ts";
import { floats, guest, maxDiff, nnEnv, nnManifest, tensorPayload } from "./_helpers.ts";

const logs = (o: { logs: { message: string }[] }) => o.logs.map((l) => l.message).join("\n");

/** A module without nn that answers every message (status 0). */
const plain = () =>
  module(`(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (i32.const 0))`);

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 20_000) {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("out of memory in the capped heap during compute: the call gets runtime_error with the reason, the same engine keeps serving", async () => {
  // A thousandth of the default fuel per engine ms: the 8192-row charge, scaled from a
  // cost measured at install, must not reach the 1e10 limit on a loaded machine.
  const e = await nnEnv({ memoryBytes: 32 << 20, fuelPerMs: 1_000 });
  try {
    // 128 KiB of weights load; a batch of 8192 needs 128 MiB of activations.
    const m = mlp([8, 4096, 2], 3);
    await e.nn.install("m", m.bytes);
    await e.host.install(
      nnManifest("g", ["m"], { limits: { max_payload_bytes: 1 << 20, fuel_per_message: 1e10 } }),
      await guest(),
    );
    const before = await e.nn.engineStatus();
    let out = await e.host.deliver("g", "run/m", tensorPayload([8192, 8], new Float32Array(65536)));
    assert.equal(out.status, 400 + NnErrno.RUNTIME_ERROR);
    assert.match(logs(out), /wasi-nn compute: engine: .*bad_alloc/);
    const after = await e.nn.engineStatus();
    assert.ok(after.heap_bytes <= 32 << 20, `heap ${after.heap_bytes}`);
    assert.equal(after.crashes, 0);
    assert.equal(after.start_ms, before.start_ms, "not restarted");
    const x = Float32Array.from({ length: 8 }, (_, i) => i - 4);
    out = await e.host.deliver("g", "run/m", tensorPayload([1, 8], x));
    assert.equal(out.status, 0, logs(out));
    assert.ok(maxDiff(floats(out.published[0].payload), m.reference(x)) < 1e-4);
  } finally {
    await e.dispose();
  }
});

Deno.test("the engine dies mid-compute: the guest gets runtime_error at once, other modules keep working, the engine restarts with its models, counted and visible", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "edged-nn-crash-" });
  const metrics = new Metrics();
  // A deadline far beyond the test's wait: the answer must come from the crash, not the deadline.
  // The charge of a compute is its cost measured at install scaled by its input, and a
  // loaded machine can inflate that measurement past the 1e10 fuel a message may have
  // (CI: the call faulted before it reached the engine). Fuel is not what this test is
  // about: a thousandth of the default rate keeps any charge far below the limit.
  const models = modelsComponent({
    dataDir,
    metrics,
    deadlineMs: 60_000,
    idleStopMs: 50,
    fuelPerMs: 1_000,
  });
  const e = await env({ dataDir, nn: models.nn });
  try {
    const nn = models.nn;
    // ~4.5 G multiply-adds for a batch of 512: half a second or more here, so the
    // kill 150 ms after the call lands while the engine computes.
    const slow = mlp([64, 8192, 1024, 1], 11);
    const small = mlp([8, 16, 4], 5);
    await nn.install("slow", slow.bytes);
    await nn.install("small", small.bytes);
    await e.host.install(
      nnManifest("g", ["slow", "small"], {
        limits: { max_payload_bytes: 1 << 20, fuel_per_message: 1e10 },
      }),
      await guest(),
    );
    await e.host.install(manifest("plain"), await plain());
    const x = Float32Array.from({ length: 8 }, (_, i) => i / 8);
    assert.equal((await e.host.deliver("g", "run/small", tensorPayload([1, 8], x))).status, 0);

    const call = e.host.deliver(
      "g",
      "run/slow",
      tensorPayload([512, 64], new Float32Array(32768)),
    );
    await new Promise((r) => setTimeout(r, 150)); // the computation is under way
    (await nn.open()).engine.kill("crashed: killed by the test");
    const out = await call;
    assert.equal(out.status, 400 + NnErrno.RUNTIME_ERROR, `${logs(out)} ${out.error?.message}`);
    assert.match(logs(out), /the inference engine stopped during this call/);

    // The runtime and a module without nn are unaffected.
    assert.equal((await e.host.deliver("plain", "t", new Uint8Array(1))).status, 0);

    await until(
      "the engine runs again",
      () => nn.running && nn.engineStatus().then((s) => s.state === "running"),
    );
    const s = await nn.engineStatus();
    assert.equal(s.crashes, 1);
    assert.equal(s.restarts, 1);
    assert.match(s.last_crash?.reason ?? "", /killed by the test/);
    assert.deepEqual(
      [...s.models].sort(),
      ["slow", "small"],
      "the granted models are loaded again",
    );
    assert.equal((await nn.get("small")).loaded, true);

    const again = await e.host.deliver("g", "run/small", tensorPayload([1, 8], x));
    assert.equal(again.status, 0, logs(again));
    assert.ok(maxDiff(floats(again.published[0].payload), small.reference(x)) < 1e-4);

    const api = await (await modelsApi(nn).request("/")).json();
    assert.equal(api.engine.state, "running");
    assert.equal(api.engine.crashes, 1);
    assert.match(api.engine.last_crash.reason, /killed by the test/);
    const text = metrics.render();
    assert.match(text, /^edged_nn_engine_crashes_total 1$/m);
    assert.match(text, /^edged_nn_engine_restarts_total 1$/m);
  } finally {
    await e.close();
    await models.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("crashes in a row back off: the engine waits before each restart, calls meanwhile answer busy at once, module loads still work", async () => {
  const e = await nnEnv({ restartDelayMs: 1500, restartMaxDelayMs: 60_000, deadlineMs: 60_000 });
  try {
    const small = mlp([8, 16, 4], 5);
    await e.nn.install("small", small.bytes);
    await e.host.install(nnManifest("g", ["small"]), await guest());
    const x = Float32Array.from({ length: 8 }, (_, i) => i / 8);
    const run = () => e.host.deliver("g", "run/small", tensorPayload([1, 8], x));
    assert.equal((await run()).status, 0);

    // The first crash after a start restarts at once.
    e.nn.engine.kill("crashed: first");
    let s = await e.nn.engineStatus();
    assert.equal(s.crashes, 1);
    assert.equal(s.restart_in_ms, 0);
    await until("the first restart", () => e.nn.engineStatus().then((s) => s.state === "running"));
    assert.equal((await run()).status, 0);

    // The second, soon after that start, waits restartDelayMs; the third twice that.
    e.nn.engine.kill("crashed: second");
    s = await e.nn.engineStatus();
    assert.equal(s.state, "restarting");
    assert.equal(s.running, false);
    assert.ok(s.restart_in_ms > 1000 && s.restart_in_ms <= 1500, `${s.restart_in_ms}`);
    // Meanwhile a call answers busy without waiting for its deadline, and a module still loads.
    // (The guest loads the model by name for each message: load_by_name is the call answering.)
    let out = await run();
    assert.equal(out.status, 100 + NnErrno.BUSY, logs(out));
    assert.match(logs(out), /restarting after a crash/);
    await e.host.install(nnManifest("g2", ["small"]), await guest());
    await until("the second restart", () => e.nn.engineStatus().then((s) => s.state === "running"));
    out = await e.host.deliver("g2", "run/small", tensorPayload([1, 8], x));
    assert.equal(out.status, 0, logs(out));
    assert.equal((await run()).status, 0);

    e.nn.engine.kill("crashed: third");
    s = await e.nn.engineStatus();
    assert.ok(s.restart_in_ms > 2500 && s.restart_in_ms <= 3000, `${s.restart_in_ms}`);
    assert.equal(s.crashes, 3);
    assert.equal(s.restarts, 2);
  } finally {
    await e.dispose();
  }
});
