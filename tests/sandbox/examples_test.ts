/**
 * The example modules, built by real toolchains (clang + wasi-libc,
 * AssemblyScript, wabt) and committed with their digests, run in the sandbox.
 */
import assert from "node:assert/strict";
import type { ModuleHost } from "../../sandbox/mod.ts";
import { enc, env, until } from "./_helpers.ts";

const ROOT = new URL("../../examples/modules/", import.meta.url).pathname;

async function load(host: ModuleHost, dir: string) {
  const manifest = JSON.parse(await Deno.readTextFile(`${ROOT}${dir}/manifest.json`));
  assert.match(manifest.sha256, /^[0-9a-f]{64}$/, `${dir} manifest carries the digest`);
  return host.install(manifest, await Deno.readFile(`${ROOT}${dir}/module.wasm`));
}

const reading = (device: string, value: number) =>
  enc(JSON.stringify({ device_id: device, metric: "temperature", value, timestamp: Date.now() }));

Deno.test("C (clang, wasi-libc): the threshold-alert rule turns readings into alerts with hysteresis", async () => {
  const e = await env();
  try {
    const s = await load(e.host, "threshold-alert-c");
    assert.equal(s.state, "running");
    const values = [70, 76, 80, 74, 72.9, 71, 90];
    await e.readings.append(
      values.map((value) => ({ device_id: "pump-7", metric: "temperature", value, timestamp: 1 })),
    );
    await until(() => e.host.status("threshold-alert").delivery!.readings.lag === 0);
    assert.equal(e.host.status("threshold-alert").messages_in, values.length);
    const alerts = e.seen.filter((m) => m.topic === "alerts/pump-7/temperature").map((m) =>
      JSON.parse(m.payload)
    );
    // high at 76; 74 stays high (hysteresis 2); 72.9 goes back to normal; 90 high again.
    assert.deepEqual(alerts.map((a) => [a.value, a.state]), [[76, "high"], [72.9, "normal"], [
      90,
      "high",
    ]]);
    assert.equal(alerts[0].threshold, 75);
    // printf reaches the log through WASI fd_write.
    const out = await e.host.deliver("threshold-alert", "config/threshold-alert", enc("95"));
    assert.equal(out.status, 0);
    assert.deepEqual(out.logs.map((l) => l.message), ["threshold set to 95.00"]);
    const low = await e.host.deliver(
      "threshold-alert",
      "sensors/pump-7/temperature",
      reading("pump-7", 91),
    );
    assert.equal(low.published[0].topic, "alerts/pump-7/temperature");
    assert.ok(low.fuelUsed > 0 && low.fuelUsed < 5_000_000);
    assert.equal(e.host.status("threshold-alert").errors, 0);
  } finally {
    await e.dispose();
  }
});

Deno.test("C: the threshold and per-device state survive a new version and a restart (kv)", async () => {
  const e = await env();
  try {
    await load(e.host, "threshold-alert-c");
    await e.host.deliver("threshold-alert", "config/threshold-alert", enc("50"));
    await e.host.deliver("threshold-alert", "sensors/a/temperature", reading("a", 60));
    await e.close();
    const again = await env({ dataDir: e.dataDir });
    try {
      // 60 again: already high, no new alert; 40: back to normal under the restored threshold 50.
      assert.equal(
        (await again.host.deliver("threshold-alert", "sensors/a/temperature", reading("a", 60)))
          .published
          .length,
        0,
      );
      const back = await again.host.deliver(
        "threshold-alert",
        "sensors/a/temperature",
        reading("a", 40),
      );
      assert.equal(JSON.parse(new TextDecoder().decode(back.published[0].payload)).threshold, 50);
    } finally {
      await again.close();
    }
  } finally {
    await Deno.remove(e.dataDir, { recursive: true });
  }
});

Deno.test("AssemblyScript: the moving average publishes once per ten readings", async () => {
  const e = await env();
  try {
    await load(e.host, "moving-average-as");
    await e.readings.append(
      Array.from(
        { length: 20 },
        (_, i) => ({ device_id: "fan-1", metric: "vibration", value: i + 1, timestamp: 1 }),
      ),
    );
    await until(() => e.host.status("moving-average").delivery!.readings.lag === 0);
    assert.equal(e.host.status("moving-average").messages_in, 20);
    const avgs = e.seen.filter((m) => m.topic === "uplink/telemetry/average").map((m) =>
      JSON.parse(m.payload)
    );
    assert.deepEqual(avgs, [{ average: 5.5, count: 10 }, { average: 15.5, count: 20 }]);
  } finally {
    await e.dispose();
  }
});

Deno.test("WAT: the relay republishes under uplink/telemetry/relay", async () => {
  const e = await env();
  try {
    await load(e.host, "relay-wat");
    const out = await e.host.deliver("relay", "sensors/x/relay", enc('{"a":1}'));
    assert.deepEqual(out.published.map((p) => p.topic), ["uplink/telemetry/relay"]);
    assert.equal(new TextDecoder().decode(out.published[0].payload), '{"a":1}');
  } finally {
    await e.dispose();
  }
});

Deno.test("Rust (rustc wasm32-wasi, std): starts, prints through WASI, keeps state between messages", async () => {
  const e = await env();
  try {
    await load(e.host, "counter-rust");
    const first = await e.host.deliver("counter", "sensors/a/count", enc("1"));
    assert.equal(first.status, 0, JSON.stringify(first.error));
    assert.deepEqual(first.logs.map((l) => l.message), ["message 1 on sensors/a/count"]);
    const second = await e.host.deliver("counter", "sensors/b/count", enc("1"));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(second.published[0].payload)), {
      topic: "sensors/b/count",
      count: 2,
    });
  } finally {
    await e.dispose();
  }
});
