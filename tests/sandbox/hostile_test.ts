/**
 * Hostile modules (issue 11's table), each written here in WAT and run the way
 * edged runs it (a Worker of the pool, a neighbour on the same Worker): the
 * module is stopped or refused with its reason, the neighbour keeps answering,
 * and the process stays up and bounded.
 */
import assert from "node:assert/strict";
import { createApp, Metrics } from "../../runtime/mod.ts";
import { type CallOutcome, modulesApi } from "../../sandbox/mod.ts";
import { enc, type Env, env, manifest, module, until, wat } from "./_helpers.ts";
import { HOSTILES } from "./_hostile_modules.ts";

const DEFAULT_FUEL = 10_000_000;

/** A neighbour that answers 7 to every message. */
const SEVEN =
  `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (i32.const 7))`;

/**
 * Installs `bytes` as `hostile` beside the neighbour (one Worker for both),
 * delivers one message to it, checks the neighbour still answers on its
 * Worker, and returns the hostile call's outcome.
 */
async function attack(
  e: Env,
  bytes: Uint8Array,
  over: { grants?: Record<string, unknown>; limits?: Record<string, unknown> } = {},
): Promise<CallOutcome> {
  await e.host.install(manifest("neighbour"), await module(SEVEN));
  await e.host.install(
    manifest("hostile", {
      grants: over.grants,
      limits: { fuel_per_message: DEFAULT_FUEL, memory_bytes: 16 << 20, ...over.limits },
    }),
    bytes,
  );
  const out = await e.host.deliver("hostile", "t", enc("go"));
  const n = await e.host.deliver("neighbour", "t", enc("x"));
  assert.equal(n.status, 7, "the neighbour answers after the attack");
  assert.equal(e.host.status("neighbour").worker, 0, "the neighbour stays on its Worker");
  return out;
}

/** Where each runaway of the catalogue runs out of fuel: its own code, or a host function. */
const STOPPED_IN: Record<string, RegExp> = {
  "fill": /^fuel exhausted: /,
  "copy": /^fuel exhausted: /,
  "table.fill": /^fuel exhausted: /,
  "random_get": /^fuel exhausted in random_get: /,
  "kv_set": /^fuel exhausted in kv_set: /,
  "sensor_read": /^fuel exhausted in sensor_read: /,
  "log": /^fuel exhausted in log: /,
};

for (const h of HOSTILES.filter((h) => STOPPED_IN[h.name])) {
  Deno.test(`hostile: ${h.what} runs out of fuel; its neighbour keeps answering`, async () => {
    const e = await env({ workers: 1, logLinesPerSecond: 1 });
    const dir = await Deno.makeTempDir({ prefix: "edged-sensor-" });
    try {
      const ctx = { sensorPath: `${dir}/temp1_input` };
      await Deno.writeTextFile(ctx.sensorPath, "42000\n");
      const out = await attack(e, await wat(h.wat(ctx)), h.manifest(ctx));
      assert.equal(out.status, null);
      assert.equal(out.error?.kind, "fuel", JSON.stringify(out.error));
      assert.match(out.error!.message, STOPPED_IN[h.name]);
      assert.equal(out.fuelUsed, DEFAULT_FUEL);
      // The runaway goes on in the probation Worker (index `workers`), away from the neighbour.
      await until(() => e.host.status("hostile").worker === 1);
      assert.equal(e.host.status("neighbour").errors, 0);
      const s = e.host.status("hostile");
      if (h.name === "kv_set") {
        // A call's kv writes commit with its other effects or not at all: the writes it
        // made before its fuel ran out went with the faulted call, none reached the disk.
        assert.equal(s.kv_bytes, 0, `${s.kv_bytes} bytes of kv written by a faulted call`);
      }
      if (h.name === "log") {
        assert.ok(out.logs.length <= 100, `${out.logs.length} lines`);
        assert.ok(out.logs.reduce((n, l) => n + l.message.length, 0) <= 64 * 1024);
        // The device log took its burst (5 at 1 line/s), the rest was counted as dropped.
        assert.ok(s.logs_dropped > 1000, `${s.logs_dropped} dropped`);
      }
    } finally {
      await e.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("hostile: publishing 16 MiB 69 times per message gets QUOTA past its per-call bytes; the API answers 200 and RSS stays bounded", async () => {
  const e = await env({ workers: 1 });
  try {
    const h = HOSTILES.find((h) => h.name === "publish 16 MiB")!;
    const ctx = { sensorPath: "/nonexistent" };
    const bytes = await wat(h.wat(ctx));
    const over = h.manifest(ctx);
    const out = await attack(e, bytes, over);
    // One 16 MiB publish fits the call (publish_bytes_per_call defaults to max_payload_bytes
    // and 4 KiB of topic); the other 68 get QUOTA (-5) inside the module.
    assert.equal(out.error, undefined);
    assert.equal(out.published.length, 1);
    // And the per-second byte rate (1 MiB/s, a burst of one call's bytes) refuses the next call's.
    const api = createApp({
      token: "t".repeat(32),
      metrics: new Metrics(),
      notReady: () => [],
      routes: [{ path: "/api/v1/modules", app: modulesApi(e.host) }],
      dashboard: () => new Response(""),
      bodyLimitBytes: 1024 * 1024,
    });
    const rss0 = Deno.memoryUsage().rss;
    for (let i = 0; i < 10; i++) {
      const res = await api.request("/api/v1/modules/hostile/messages", {
        method: "POST",
        body: JSON.stringify({ topic: "t", payload: i }),
        headers: { authorization: `Bearer ${"t".repeat(32)}`, "content-type": "application/json" },
      });
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.status, 0);
      assert.deepEqual(body.published, [], "every publish refused with QUOTA: no bytes left");
    }
    const grewMiB = (Deno.memoryUsage().rss - rss0) / (1 << 20);
    assert.ok(grewMiB < 256, `RSS grew ${grewMiB.toFixed(0)} MiB over 10 messages`);
    // Everything it published reached the bus once: 16 MiB, not 69 × 16 MiB per message.
    const onBus = e.seen.filter((m) => m.topic === "uplink/big");
    assert.equal(onBus.length, 1);
  } finally {
    await e.dispose();
  }
});

Deno.test("publish limits: messages per call and per second get QUOTA (-5) inside the module", async () => {
  const e = await env({ workers: 1 });
  try {
    // Publishes 10 one-byte messages, returns how many got QUOTA.
    const bytes = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local $i i32) (local $q i32)
        (loop $l
          (if (i32.eq (call $publish (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1))
                (i32.const -5))
            (then (local.set $q (i32.add (local.get $q) (i32.const 1)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 10))))
        (local.get $q))
       (data (i32.const 0) "p")`,
      `(import "edge" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))`,
    );
    const grants = { publish: ["p"] };
    await e.host.install(
      manifest("percall", { grants, limits: { publish_messages_per_call: 4 } }),
      bytes,
    );
    const a = await e.host.deliver("percall", "t", enc("x"));
    assert.equal(a.status, 6);
    assert.equal(a.published.length, 4);
    await e.host.install(
      manifest("persec", { grants, limits: { publish_messages_per_second: 15 } }),
      bytes,
    );
    assert.equal((await e.host.deliver("persec", "t", enc("x"))).status, 0);
    // 15 a second: the second call in the same second gets 5 through, then QUOTA.
    const b = await e.host.deliver("persec", "t", enc("x"));
    assert.equal(b.status, 5);
    assert.equal(b.published.length, 5);
    await e.host.install(
      manifest("bytes", { grants, limits: { publish_bytes_per_call: 6 } }),
      bytes,
    );
    // Topic "p" plus one payload byte: 2 bytes a message, 3 messages fit in 6 bytes.
    assert.equal((await e.host.deliver("bytes", "t", enc("x"))).status, 7);
  } finally {
    await e.dispose();
  }
});

Deno.test("kv: a value over grants.kv.max_value_bytes gets TOO_BIG (-4) and is not stored", async () => {
  const e = await env({ workers: 1 });
  try {
    const bytes = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
        (call $set (i32.const 0) (i32.const 1) (local.get 2) (local.get 3)))
       (data (i32.const 0) "k")`,
      `(import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))`,
    );
    await e.host.install(
      manifest("kv", { grants: { kv: { max_bytes: 1 << 20, max_value_bytes: 100 } } }),
      bytes,
    );
    assert.equal((await e.host.deliver("kv", "t", new Uint8Array(100))).status, 0);
    assert.equal((await e.host.deliver("kv", "t", new Uint8Array(101))).status, -4);
    assert.equal(e.host.status("kv").kv_bytes, 101);
  } finally {
    await e.dispose();
  }
});

Deno.test("wall-clock guard: a call past its deadline is counted as an overrun, its module moves to probation, its outcome stands", async () => {
  const metrics = new Metrics();
  // A deadline of 20 ms, whatever the fuel: a call that takes ~150 ms within its fuel overruns it.
  const e = await env({ workers: 1, metrics, deadlineMs: () => 20 });
  try {
    const bytes = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local $t0 i64)
        (local.set $t0 (call $now))
        (loop $l (br_if $l (i64.lt_u (i64.sub (call $now) (local.get $t0)) (i64.const 150))))
        (i32.const 3))`,
      `(import "edge" "now_ms" (func $now (result i64)))`,
    );
    const out = await attack(e, bytes, {
      grants: { clock: true },
      limits: { fuel_per_message: 5_000_000_000 },
    });
    assert.equal(out.status, 3, "the call completed: its outcome stands");
    assert.equal(out.error, undefined);
    const s = e.host.status("hostile");
    assert.equal(s.overruns, 1);
    assert.equal(s.errors, 0);
    await until(() => e.host.status("hostile").worker === 1);
    assert.match(metrics.render(), /edged_module_overruns_total\{module="hostile"\} 1\b/);
    // On probation it still runs (and overruns again there, counted, staying there).
    assert.equal((await e.host.deliver("hostile", "t", enc("x"))).status, 3);
    assert.equal(e.host.status("hostile").overruns, 2);
    assert.equal(e.host.status("hostile").worker, 1);
  } finally {
    await e.dispose();
  }
});

Deno.test("thread share: kv and sensor calls past a module's share of the runtime's thread get QUOTA (-5) without a round trip", async () => {
  // 5 ms of the runtime's thread per second for the module.
  const e = await env({ workers: 1, threadMsPerSecond: 5 });
  const dir = await Deno.makeTempDir({ prefix: "edged-sensor-" });
  try {
    const path = `${dir}/temp1_input`;
    await Deno.writeTextFile(path, "42000\n");
    // 2,000 sensor_read calls, well within its fuel; returns how many got QUOTA.
    const bytes = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local $i i32) (local $q i32)
        (loop $l
          (if (i32.eq (call $read (i32.const 0) (i32.const ${path.length}) (i32.const 2048) (i32.const 64))
                (i32.const -5))
            (then (local.set $q (i32.add (local.get $q) (i32.const 1)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 2000))))
        (local.get $q))
       (data (i32.const 0) "${path}")`,
      `(import "edge" "sensor_read" (func $read (param i32 i32 i32 i32) (result i32)))`,
    );
    const out = await attack(e, bytes, {
      grants: { sensor: [path] },
      limits: { fuel_per_message: 1_000_000_000 },
    });
    assert.equal(out.error, undefined);
    // A round trip takes tens of microseconds: 5 ms pays for a few hundred at most.
    const answered = 2000 - out.status!;
    assert.ok(answered >= 1 && answered < 1000, `${answered} reads answered`);
  } finally {
    await e.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
