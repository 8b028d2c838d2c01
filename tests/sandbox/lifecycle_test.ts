import assert from "node:assert/strict";
import { enc, env, manifest, module, until } from "./_helpers.ts";

/** Publishes "out" with [version byte, payload...]. */
function tagged(version: number) {
  return module(
    `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
      ;; write the version byte just before the payload and publish both
      (i32.store8 (i32.sub (local.get 2) (i32.const 1)) (i32.const ${48 + version}))
      (call $publish (i32.const 0) (i32.const 3) (i32.sub (local.get 2) (i32.const 1)) (i32.add (local.get 3) (i32.const 1))))
     (data (i32.const 0) "out")`,
    `(import "edge" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))`,
  );
}

const COUNTER = module(
  `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local $n i32)
    (if (i32.ne (call $get (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)) (i32.const 4))
      (then (i32.store (i32.const 16) (i32.const 0))))
    (local.set $n (i32.add (i32.load (i32.const 16)) (i32.const 1)))
    (i32.store (i32.const 16) (local.get $n))
    (drop (call $set (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)))
    (local.get $n))
   (data (i32.const 0) "n")`,
  `(import "edge" "kv_get" (func $get (param i32 i32 i32 i32) (result i32)))
   (import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))`,
);

Deno.test("swap under load: every message is handled exactly once, by the old or the new version", async () => {
  const e = await env({ queueCapacity: 100_000 });
  try {
    const m = (v: number) =>
      manifest("swap", {
        version: `${v}.0.0`,
        subscribe: ["in/#"],
        grants: { publish: ["out"] },
        limits: { messages_per_second: 100_000, publish_messages_per_second: 100_000 },
      });
    const v1 = await tagged(1);
    const v2 = await tagged(2);
    await e.host.install(m(1), v1);
    const N = 3000;
    let sent = 0;
    const producer = (async () => {
      while (sent < N) {
        for (let i = 0; i < 50 && sent < N; i++) e.bus.publish("in/x", enc(String(sent++)), "test");
        await new Promise((r) => setTimeout(r, 0));
      }
    })();
    let swaps = 0;
    while (sent < N) {
      await e.host.install(m(swaps % 2 === 0 ? 2 : 1), swaps % 2 === 0 ? v2 : v1);
      swaps++;
    }
    await producer;
    await until(() => e.seen.filter((x) => x.topic === "out").length >= N);
    await new Promise((r) => setTimeout(r, 20));
    const outs = e.seen.filter((x) => x.topic === "out");
    assert.equal(outs.length, N, "no message lost or duplicated");
    const ids = outs.map((x) => Number(x.payload.slice(1))).sort((a, b) => a - b);
    assert.deepEqual(ids, [...Array(N).keys()]);
    const versions = new Set(outs.map((x) => x.payload[0]));
    assert.ok(swaps >= 2, `only ${swaps} swaps happened`);
    assert.deepEqual([...versions].sort(), ["1", "2"]);
    const s = e.host.status("swap");
    assert.equal(s.errors, 0);
    assert.deepEqual(s.dropped, { oversize: 0, lagging: 0 });
  } finally {
    await e.dispose();
  }
});

Deno.test("restart: installed modules and their kv state come back before start() resolves", async () => {
  const first = await env();
  const dataDir = first.dataDir;
  try {
    await first.host.install(
      manifest("count", { grants: { kv: { max_bytes: 100 } } }),
      await COUNTER,
    );
    assert.equal((await first.host.deliver("count", "t", enc("x"))).status, 1);
    assert.equal((await first.host.deliver("count", "t", enc("x"))).status, 2);
    // A new version keeps the state too.
    await first.host.install(
      manifest("count", { version: "1.1.0", grants: { kv: { max_bytes: 100 } } }),
      await COUNTER,
    );
    assert.equal((await first.host.deliver("count", "t", enc("x"))).status, 3);
    await first.close();

    const second = await env({ dataDir });
    try {
      assert.deepEqual(second.host.names(), ["count"]);
      assert.equal(second.host.status("count").version, "1.1.0");
      assert.equal(second.host.notReady().length, 0);
      assert.equal((await second.host.deliver("count", "t", enc("x"))).status, 4);
      await second.host.remove("count");
      assert.deepEqual(second.host.names(), []);
      await second.close();
      const third = await env({ dataDir });
      assert.deepEqual(third.host.names(), []);
      await third.close();
    } finally {
      await second.close().catch(() => {});
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a full queue and the messages_per_second limit make messages wait in the log, never drop", async () => {
  const e = await env({ queueCapacity: 4 });
  try {
    const echo = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (i32.const 0))`,
    );
    await e.host.install(manifest("small-queue", { subscribe: ["burst"] }), echo);
    await e.host.install(
      manifest("slow-rate", { subscribe: ["burst"], limits: { messages_per_second: 50 } }),
      echo,
    );
    await e.host.install(
      manifest("big", { subscribe: ["burst"], limits: { max_payload_bytes: 1 } }),
      echo,
    );
    const t0 = Date.now();
    for (let i = 0; i < 100; i++) e.bus.publish("burst", enc(String(i % 10)), "test");
    e.bus.publish("burst", enc("too long"), "test");
    // The queue holds 4 at a time: the rest waits in the message log and follows.
    await until(() => e.host.status("small-queue").messages_in === 101);
    const q = e.host.status("small-queue");
    assert.deepEqual(q.dropped, { oversize: 0, lagging: 0 });
    // 50 per second: a second's burst at once, then the rest paced, none lost.
    await until(() => e.host.status("slow-rate").messages_in === 101, 10_000);
    assert.ok(Date.now() - t0 >= 800, `101 messages at 50/s took only ${Date.now() - t0} ms`);
    assert.deepEqual(e.host.status("slow-rate").dropped, { oversize: 0, lagging: 0 });
    const b = e.host.status("big");
    await until(() => e.host.status("big").delivery!.messages.lag === 0);
    assert.equal(e.host.status("big").dropped.oversize, 1);
    assert.equal(b.dropped.lagging, 0);
  } finally {
    await e.dispose();
  }
});

Deno.test("all modules' queues together hold at most queueBytesTotal; the rest waits in the log, none lost", async () => {
  // 8 modules share 64 KiB: 8 KiB each, though each alone may hold 1 MiB.
  const e = await env({ queueBytes: 1 << 20, queueBytesTotal: 64 * 1024 });
  try {
    const echo = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (i32.const 0))`,
    );
    const names = Array.from({ length: 8 }, (_, i) => `slow-${i}`);
    for (const name of names) {
      await e.host.install(
        manifest(name, { subscribe: ["big"], limits: { messages_per_second: 20 } }),
        echo,
      );
    }
    const payload = enc("x".repeat(4096));
    for (let i = 0; i < 40; i++) e.bus.publish("big", payload, "test");
    let peak = 0;
    await until(() => {
      const all = names.map((n) => e.host.status(n));
      peak = Math.max(peak, all.reduce((sum, s) => sum + s.queue_bytes, 0));
      return all.every((s) => s.messages_in === 40);
    }, 10_000);
    assert.ok(peak > 0, "the queues held something");
    assert.ok(peak <= 64 * 1024, `the queues held ${peak} bytes together`);
    for (const n of names) assert.deepEqual(e.host.status(n).dropped, { oversize: 0, lagging: 0 });
  } finally {
    await e.dispose();
  }
});

Deno.test("the reading log delivers readings to subscribed modules only, once", async () => {
  const e = await env();
  try {
    await e.host.install(
      manifest("temps", { subscribe: ["sensors/+/temperature"] }),
      await module(
        `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (i32.const 0))`,
      ),
    );
    const at = { value: 1, timestamp: 1700000000000 };
    await e.readings.append([
      { device_id: "pump-7", metric: "temperature", ...at },
      { device_id: "pump-7", metric: "pressure", ...at },
      { device_id: "pump-8", metric: "temperature", ...at },
    ]);
    // A reading also published on the bus by ingest is not delivered a second time.
    e.bus.publish("sensors/pump-7/temperature", enc("{}"), "ingest");
    await until(() => e.host.status("temps").messages_in === 2);
    await until(() => e.host.status("temps").delivery!.readings.lag === 0);
    assert.equal(e.host.status("temps").messages_in, 2);
  } finally {
    await e.dispose();
  }
});
