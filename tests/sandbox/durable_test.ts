/**
 * Durable subscriptions in one process: modules read the reading log and the
 * message log through their cursors, and a message's effects (kv writes,
 * publications, cursor) commit as one. The kill -9 proof is the `module`
 * crash loop (`scripts/crash/module.ts`, short form in tests/proof).
 */
import assert from "node:assert/strict";
import { dec, enc, env, manifest, module, until } from "./_helpers.ts";

const KV_PUBLISH = `
  (import "edge" "kv_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))
  (import "edge" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))`;

/**
 * Counts messages in kv key "n" and publishes "out" with the payload; traps
 * after both when the payload starts with "!" (so its effects must vanish).
 */
const COUNTER = module(
  `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local $n i32)
    (if (i32.ne (call $get (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)) (i32.const 4))
      (then (i32.store (i32.const 16) (i32.const 0))))
    (local.set $n (i32.add (i32.load (i32.const 16)) (i32.const 1)))
    (i32.store (i32.const 16) (local.get $n))
    (drop (call $set (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)))
    (drop (call $publish (i32.const 32) (i32.const 3) (local.get 2) (local.get 3)))
    (if (i32.eq (i32.load8_u (local.get 2)) (i32.const 33)) (then unreachable))
    (i32.const 0))
   (data (i32.const 0) "n")
   (data (i32.const 32) "out")`,
  KV_PUBLISH,
);

const reading = (device: string, value: number) => ({
  device_id: device,
  metric: "temperature",
  value,
  timestamp: 1700000000000,
});

const kvCount = (e: Awaited<ReturnType<typeof env>>, name: string) => {
  const row = e.store.db.prepare("SELECT value FROM module_kv WHERE module = ? AND key = ?")
    .get(name, enc("n")) as { value: Uint8Array } | undefined;
  return row ? new DataView(row.value.buffer, row.value.byteOffset).getUint32(0, true) : 0;
};

const counterManifest = (over: Record<string, unknown> = {}) =>
  manifest("counter", {
    subscribe: ["sensors/+/temperature", "work/#"],
    grants: { kv: { max_bytes: 64 }, publish: ["out"] },
    limits: { messages_per_second: 100_000 },
    ...over,
  });

Deno.test("after a stop mid-stream a module resumes right after its cursor: nothing twice, nothing skipped", async () => {
  const first = await env();
  const dataDir = first.dataDir;
  const outs: string[] = [];
  try {
    await first.host.install(counterManifest(), await COUNTER);
    const N = 400;
    const rows = Array.from({ length: N }, (_, i) => reading("pump", i));
    await first.readings.append(rows);
    // Stop while the module is still working through the log.
    await until(() => first.host.status("counter").messages_in >= 50);
    await first.close();
    outs.push(...first.seen.filter((m) => m.topic === "out").map((m) => m.payload));
    const before = outs.length;
    assert.ok(before < N, `all ${N} were done before the stop; the test shows nothing`);

    // Readings ingested while the module is not running reach it once it runs.
    const second = await env({ dataDir });
    try {
      await second.readings.append([reading("pump", N), reading("pump", N + 1)]);
      await until(() => second.host.status("counter").delivery!.readings.lag === 0);
      outs.push(...second.seen.filter((m) => m.topic === "out").map((m) => m.payload));
      const values = outs.map((p) => JSON.parse(p).value).sort((a, b) => a - b);
      assert.deepEqual(values, [...Array(N + 2).keys()], "each reading's output exactly once");
      assert.equal(kvCount(second, "counter"), N + 2, "the kv counter saw each reading once");
    } finally {
      await second.close();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a message's effects commit together: a call that traps after kv_set and publish leaves neither", async () => {
  const e = await env();
  try {
    await e.host.install(counterManifest(), await COUNTER);
    e.bus.publish("work/a", enc("ok"), "test");
    e.bus.publish("work/a", enc("!boom"), "test");
    e.bus.publish("work/a", enc("ok again"), "test");
    await e.store.commits.flushed(); // the messages are in the message log
    await until(() => e.host.status("counter").delivery!.messages.lag === 0);
    const s = e.host.status("counter");
    assert.equal(s.messages_in, 3);
    assert.equal(s.faults.trap, 1);
    assert.deepEqual(e.seen.filter((m) => m.topic === "out").map((m) => m.payload), [
      "ok",
      "ok again",
    ]);
    assert.equal(kvCount(e, "counter"), 2);
    // The messages API answers once its effects are durable, and reports them.
    const out = await e.host.deliver("counter", "work/x", enc("third"));
    assert.equal(out.status, 0);
    assert.equal(kvCount(e, "counter"), 3);
  } finally {
    await e.dispose();
  }
});

Deno.test("kv writes of many messages share group transactions, not one commit each", async () => {
  const e = await env();
  try {
    // 64 kv_set per message, each to its own key.
    const many = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local $i i32)
        (loop $l
          (i32.store8 (i32.const 0) (local.get $i))
          (drop (call $set (i32.const 0) (i32.const 1) (local.get 2) (local.get 3)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 64))))
        (i32.const 0))`,
      KV_PUBLISH,
    );
    await e.host.install(
      manifest("many", {
        subscribe: ["work"],
        grants: { kv: { max_bytes: 65536 }, publish: ["out"] },
        // 64 new keys: each kv_set of a key the Worker has not seen asks for its old value.
        limits: { messages_per_second: 100_000, fuel_per_message: 100_000_000 },
      }),
      many,
    );
    const commits = e.store.commits.commits;
    const syncs = e.store.syncs;
    const M = 100;
    for (let i = 0; i < M; i++) e.bus.publish("work", enc(`v${i}`), "test");
    await e.store.commits.flushed();
    await until(() => e.host.status("many").delivery!.messages.lag === 0);
    const rows = e.store.db.prepare("SELECT count(*) AS n FROM module_kv WHERE module = 'many'")
      .get() as { n: number };
    assert.equal(rows.n, 64);
    const last = e.store.db.prepare("SELECT value FROM module_kv WHERE module = 'many'").get() as {
      value: Uint8Array;
    };
    assert.equal(dec(last.value), `v${M - 1}`);
    // 6,400 kv writes of 100 messages: each kv_set used to be its own fsync'd commit.
    const c = e.store.commits.commits - commits;
    assert.ok(c <= M, `${c} group commits for ${M} messages`);
    assert.ok(e.store.syncs - syncs <= M, `${e.store.syncs - syncs} WAL syncs`);
  } finally {
    await e.dispose();
  }
});

Deno.test("a new module starts at the logs' end unless its manifest asks for a backlog", async () => {
  const e = await env();
  try {
    await e.readings.append(Array.from({ length: 10 }, (_, i) => reading("old", i)));
    const bytes = await COUNTER;
    await e.host.install(counterManifest(), bytes);
    await e.host.install({ ...counterManifest({ backlog: 4 }), name: "backlog" }, bytes);
    await e.readings.append([reading("new", 0), reading("new", 1)]);
    await until(() =>
      e.host.status("counter").delivery!.readings.lag === 0 &&
      e.host.status("backlog").delivery!.readings.lag === 0
    );
    assert.equal(kvCount(e, "counter"), 2);
    assert.equal(kvCount(e, "backlog"), 6);
  } finally {
    await e.dispose();
  }
});

Deno.test("a module further behind than maxLag skips ahead, counted and shown; ingest never waits", async () => {
  const e = await env({ maxLag: 40, queueCapacity: 8 });
  try {
    // One message per second: it cannot keep up with 200 readings.
    await e.host.install(
      counterManifest({ limits: { messages_per_second: 1 } }),
      await COUNTER,
    );
    for (let i = 0; i < 10; i++) {
      await e.readings.append(Array.from({ length: 20 }, (_, j) => reading("fast", i * 20 + j)));
    }
    // The skip moves the cursor in the next group transaction (a 2 ms timer
    // at most): wait for it rather than read the status between the two.
    const skipped = () => {
      const s = e.host.status("counter");
      return s.delivery!.lagging && s.dropped.lagging > 0 && s.delivery!.readings.lag <= 40;
    };
    await until(skipped, 5_000).catch(() => {});
    const s = e.host.status("counter");
    assert.ok(s.delivery!.lagging, "marked lagging");
    assert.ok(s.dropped.lagging > 0, "the skip is counted");
    // Never more than maxLag behind, and everything it skipped or still owes adds up.
    assert.ok(s.delivery!.readings.lag <= 40, `lag ${s.delivery!.readings.lag}`);
    await until(
      () =>
        e.host.status("counter").messages_in + e.host.status("counter").dropped.lagging >= 200 - 40,
      10_000,
    );
  } finally {
    await e.dispose();
  }
});

Deno.test("the message log holds at most modules.message_log_bytes: a slow subscriber skips ahead, counted", async () => {
  const LIMIT = 64 * 1024;
  const e = await env({ messageLogBytes: LIMIT, queueCapacity: 4 });
  const held = () =>
    (e.store.db.prepare(
      "SELECT coalesce(sum(length(payload) + length(topic)), 0) AS n FROM module_messages",
    ).get() as { n: number }).n;
  try {
    // One message per second: it cannot keep up with 100 messages of 4 KiB (400 KiB).
    await e.host.install(counterManifest({ limits: { messages_per_second: 1 } }), await COUNTER);
    for (let i = 0; i < 100; i++) {
      e.bus.publish("work/big", new Uint8Array(4096).fill(65 + (i % 26)), "test");
      if (i % 10 === 9) await e.store.commits.flushed();
    }
    await until(() => e.host.status("counter").dropped.lagging > 0, 5_000);
    // 410 KB were published for it: the log comes back within its bound (it held them all).
    await until(() => held() <= LIMIT, 5_000).catch(() => {});
    assert.ok(held() <= LIMIT, `the log holds ${held()} bytes`);
    const s = e.host.status("counter");
    assert.ok(s.delivery!.lagging, "marked lagging");
    // Everything is accounted for: handled, skipped, or still waiting in the log.
    const waiting = s.delivery!.messages.lag;
    assert.ok(s.messages_in + s.dropped.lagging + waiting >= 100, JSON.stringify(s));
  } finally {
    await e.dispose();
  }
});

Deno.test("messages from one module to another go through the message log, once each", async () => {
  const e = await env();
  try {
    const relay = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
        (call $publish (i32.const 0) (i32.const 4) (local.get 2) (local.get 3)))
       (data (i32.const 0) "work")`,
      `(import "edge" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))`,
    );
    await e.host.install(
      manifest("relay", {
        subscribe: ["sensors/#"],
        grants: { publish: ["work"] },
        limits: { messages_per_second: 100_000 },
      }),
      relay,
    );
    await e.host.install(counterManifest(), await COUNTER);
    await e.readings.append(Array.from({ length: 30 }, (_, i) => reading("r", i)));
    // counter gets 30 readings itself and 30 relayed messages.
    await until(() => kvCount(e, "counter") === 60);
    const log = e.host.status("counter");
    assert.deepEqual(log.subscriptions.map((s) => [s.filter, s.from]), [
      ["sensors/+/temperature", ["readings", "messages"]],
      ["work/#", ["messages"]],
    ]);
    await until(() => e.host.status("counter").delivery!.messages.lag === 0);
    assert.equal(e.host.status("counter").messages_in, 60);
  } finally {
    await e.dispose();
  }
});

Deno.test("effects that fail to commit are redone from the cursor on a fresh instance, once", async () => {
  const e = await env({ quarantineMs: 50 });
  try {
    await e.host.install(counterManifest(), await COUNTER);
    for (let i = 0; i < 5; i++) e.bus.publish("work/a", enc(`m${i}`), "test");
    await e.store.commits.flushed();
    await until(() => kvCount(e, "counter") === 5);
    // The kv table goes away: the module's next effects cannot commit.
    e.store.db.exec("ALTER TABLE module_kv RENAME TO module_kv_away");
    for (let i = 5; i < 8; i++) e.bus.publish("work/a", enc(`m${i}`), "test");
    await until(() => e.host.status("counter").faults.host >= 1);
    e.store.db.exec("ALTER TABLE module_kv_away RENAME TO module_kv");
    await until(() => kvCount(e, "counter") === 8, 10_000);
    await e.store.commits.flushed();
    await until(() => e.host.status("counter").delivery!.messages.lag === 0);
    const outs = e.seen.filter((m) => m.topic === "out").map((m) => m.payload);
    assert.deepEqual(outs, [...Array(8).keys()].map((i) => `m${i}`), "each output once, in order");
  } finally {
    await e.dispose();
  }
});
