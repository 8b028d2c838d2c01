/**
 * The Worker pool: modules run in Workers without permissions, in parallel,
 * with kv and sensors answered by the runtime's thread; a dead Worker is
 * replaced; deleting a module deletes its kv state unless asked to keep it.
 */
import assert from "node:assert/strict";
import { ModuleEffectsRefusedError, WorkerGoneError } from "../../sandbox/mod.ts";
import { validateModule } from "../../sandbox/validate.ts";
import { parseManifest } from "../../sandbox/manifest.ts";
import { WorkerPool } from "../../sandbox/pool.ts";
import type { KvStore } from "../../sandbox/kv.ts";
import { enc, env, manifest, module, wat } from "./_helpers.ts";

const SPIN_FOREVER =
  `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (loop $l (br $l)) (i32.const 0))`;
const ANSWER =
  `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (i32.const 7))`;

Deno.test("a module spinning in one Worker holds up neither a module in another Worker nor the runtime's thread", async () => {
  const e = await env({ workers: 2 });
  try {
    await e.host.install(
      // About 2 s of spinning here (0.2 s per 400 M): far longer than the 20 quick
      // answers below take even on a loaded machine, which a tenth of it was not.
      manifest("spin", { limits: { fuel_per_message: 4_000_000_000 } }),
      await module(SPIN_FOREVER),
    );
    await e.host.install(manifest("quick"), await module(ANSWER));
    let spinDone = false;
    const spin = e.host.deliver("spin", "t", enc("x")).finally(() => spinDone = true);
    // The runtime's thread stays free: timers fire and the other Worker answers, many times over.
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 0));
      assert.equal((await e.host.deliver("quick", "t", enc("x"))).status, 7);
    }
    assert.equal(spinDone, false, "the spinning call was still running");
    const out = await spin;
    assert.equal(out.error?.kind, "fuel");
    assert.equal(e.host.status("spin").faults.fuel, 1);
    assert.equal(e.host.status("quick").messages_in, 20);
  } finally {
    await e.dispose();
  }
});

Deno.test("a module that runs out of fuel goes on in the probation Worker, away from its neighbours", async () => {
  const e = await env({ workers: 2, faultLimit: 100 });
  try {
    await e.host.install(
      manifest("spin", { limits: { fuel_per_message: 1_000_000 } }),
      await module(SPIN_FOREVER),
    );
    await e.host.install(manifest("quick"), await module(ANSWER));
    assert.equal(e.host.status("spin").worker, 0);
    assert.equal(e.host.status("quick").worker, 1);
    assert.equal((await e.host.deliver("spin", "t", enc("x"))).error?.kind, "fuel");
    assert.equal(e.host.status("spin").worker, 2);
    // It still runs there (and still faults), and the regular Workers keep their modules.
    assert.equal((await e.host.deliver("spin", "t", enc("x"))).error?.kind, "fuel");
    assert.equal(e.host.status("spin").faults.fuel, 2);
    await e.host.install(manifest("later"), await module(ANSWER));
    assert.equal(e.host.status("later").worker, 0, "new modules never go to probation");
    assert.equal((await e.host.deliver("later", "t", enc("x"))).status, 7);
  } finally {
    await e.dispose();
  }
});

Deno.test("kv calls from a Worker are answered on the runtime's thread with the asking instance's own quota and namespace", async () => {
  const e = await env({ workers: 1 });
  try {
    // kv_set(key "k", value = payload); then kv_get into 1000 and return its length.
    const kv = await wat(`(module
      (import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))
      (import "edge" "kv_get" (func $get (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 4)
      (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
        (drop (call $set (i32.const 0) (i32.const 1) (local.get 2) (local.get 3)))
        (call $get (i32.const 0) (i32.const 1) (i32.const 100000) (i32.const 100000)))
      (data (i32.const 0) "k"))`);
    await e.host.install(
      manifest("a", {
        grants: { kv: { max_bytes: 200_000, max_value_bytes: 100_000 } },
        limits: { max_payload_bytes: 100_000 },
      }),
      kv,
    );
    await e.host.install(manifest("b", { grants: { kv: { max_bytes: 10 } } }), kv);
    // 70 KB: more than the shared buffer starts with, so it grows.
    const big = new Uint8Array(70_000).fill(0x61);
    assert.equal((await e.host.deliver("a", "t", big)).status, 70_000);
    // b's quota is its own (10 bytes); its namespace does not see a's key.
    assert.equal((await e.host.deliver("b", "t", enc("0123456789"))).status, -3);
    assert.equal((await e.host.deliver("b", "t", enc("01234567"))).status, 8);
    assert.equal(e.host.status("a").kv_bytes, 70_001);
    assert.equal(e.host.status("b").kv_bytes, 9);
  } finally {
    await e.dispose();
  }
});

Deno.test("messages sent to the old version during a swap finish there, kv calls included", async () => {
  const e = await env({ workers: 1 });
  try {
    // v1: kv_set("k", payload) and return its result; v2: the same after a long edge_init.
    const body = (init: string) =>
      module(
        `${init}
         (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
           (call $set (i32.const 0) (i32.const 1) (local.get 2) (local.get 3)))
         (data (i32.const 0) "k")`,
        `(import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))`,
      );
    const m = (version: string) =>
      manifest("swap-kv", {
        version,
        grants: { kv: { max_bytes: 100 } },
        limits: { fuel_per_message: 2_000_000_000 },
      });
    await e.host.install(m("1.0.0"), await body(""));
    const slowInit = `(func (export "edge_init") (result i32) (local i32)
      (loop $l (local.set 0 (i32.add (local.get 0) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get 0) (i32.const 150000000))))
      (i32.const 0))`;
    const swap = e.host.install(m("2.0.0"), await body(slowInit));
    // The new version is initialising in the Worker; this message queues behind it for v1,
    // and runs after the runtime has already swapped to v2.
    await new Promise((r) => setTimeout(r, 100));
    const during = e.host.deliver("swap-kv", "t", enc("old"));
    await swap;
    const out = await during;
    assert.equal(out.error, undefined);
    assert.equal(out.status, 0, "kv_set of the old version still answered");
    assert.equal(e.host.status("swap-kv").version, "2.0.0");
    assert.equal(e.host.status("swap-kv").kv_bytes, 4);
  } finally {
    await e.dispose();
  }
});

Deno.test("deleting a module deletes its kv state, unless keepState", async () => {
  const e = await env();
  try {
    const bytes = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
         (call $set (i32.const 0) (i32.const 1) (local.get 2) (local.get 3)))
       (data (i32.const 0) "k")`,
      `(import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))`,
    );
    const m = manifest("stateful", { grants: { kv: { max_bytes: 100 } } });
    await e.host.install(m, bytes);
    await e.host.deliver("stateful", "t", enc("hello"));
    assert.equal(e.host.status("stateful").kv_bytes, 6);
    await e.host.remove("stateful", { keepState: true });
    await e.host.install(m, bytes);
    assert.equal(e.host.status("stateful").kv_bytes, 6);
    await e.host.remove("stateful");
    await e.host.install(m, bytes);
    assert.equal(e.host.status("stateful").kv_bytes, 0);
  } finally {
    await e.dispose();
  }
});

Deno.test("a Worker's kv read cache never serves a deleted or moved module stale values", async () => {
  const e = await env({ workers: 1, faultLimit: 100 });
  try {
    // Payload "s<v>": kv_set("k", v), returns 0. "g": kv_get("k") length (or -3). "x": spins.
    const bytes = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
         (if (i32.eq (i32.load8_u (local.get 2)) (i32.const 115))
           (then (return (call $set (i32.const 0) (i32.const 1)
             (i32.add (local.get 2) (i32.const 1)) (i32.sub (local.get 3) (i32.const 1))))))
         (if (i32.eq (i32.load8_u (local.get 2)) (i32.const 120)) (then (loop $l (br $l))))
         (call $get (i32.const 0) (i32.const 1) (i32.const 2000) (i32.const 100)))
       (data (i32.const 0) "k")`,
      `(import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))
       (import "edge" "kv_get" (func $get (param i32 i32 i32 i32) (result i32)))`,
    );
    const m = manifest("cached", {
      grants: { kv: { max_bytes: 100 } },
      limits: { fuel_per_message: 1_000_000 },
    });
    const send = async (p: string) => (await e.host.deliver("cached", "t", enc(p))).status;
    await e.host.install(m, bytes);
    assert.equal(await send("g"), -3);
    assert.equal(await send("shello"), 0);
    assert.equal(await send("g"), 5);
    // Deleted with its state, installed again in the same Worker: the key is gone.
    await e.host.remove("cached");
    await e.host.install(m, bytes);
    assert.equal(await send("g"), -3);
    assert.equal(await send("sabc"), 0);
    assert.equal(await send("g"), 3);
    // Kept state survives a reinstall.
    await e.host.remove("cached", { keepState: true });
    await e.host.install(m, bytes);
    assert.equal(await send("g"), 3);
    // A fuel fault moves it to the probation Worker (index 1 here): reads there see the
    // value written before, writes there are what the next version (same Worker) reads.
    assert.equal((await e.host.deliver("cached", "t", enc("x"))).error?.kind, "fuel");
    assert.equal(e.host.status("cached").worker, 1);
    assert.equal(await send("g"), 3);
    assert.equal(await send("s1234567"), 0);
    assert.equal(await send("g"), 7);
    await e.host.install({ ...m, version: "1.0.1" }, bytes);
    assert.equal(await send("g"), 7);
  } finally {
    await e.dispose();
  }
});

Deno.test("a Worker that dies fails its waiting calls with WorkerGoneError and is replaced", async () => {
  const crashes: number[] = [];
  const kv: KvStore = {
    get: () => undefined,
    set: () => "ok",
    usage: () => 0,
    clear: () => {},
  };
  const pool = new WorkerPool({
    size: 1,
    kv,
    logRate: { perSecond: 10, burst: 10 },
    threadShare: { moduleMsPerSecond: 50, workerMsPerSecond: 200 },
    onSink: () => {},
    onCrash: (lane) => crashes.push(lane),
    deadlineMs: () => 10_000,
    onOverrun: () => {},
  });
  try {
    const m = parseManifest({ name: "seven", version: "1.0.0" });
    const validated = await validateModule(await module(ANSWER), m);
    const { inst } = await pool.load(0, validated);
    // A malformed batch (a bug of ours, not a guest fault) throws inside the Worker:
    // the next message posted to it loses its packed calls on the way.
    const post = Worker.prototype.postMessage;
    Worker.prototype.postMessage = function (this: Worker, msg: unknown) {
      Worker.prototype.postMessage = post;
      post.call(this, { ...(msg as object), calls: null });
    };
    try {
      await assert.rejects(
        pool.run(0, [{ inst, topic: "t", payload: enc("x") }]),
        (err) => err instanceof WorkerGoneError && /crashed/.test(err.message),
      );
    } finally {
      Worker.prototype.postMessage = post;
    }
    assert.deepEqual(crashes, [0]);
    // Its instances died with it; a new Worker takes new loads.
    const [gone] = await pool.run(0, [{ inst, topic: "t", payload: enc("x") }]);
    assert.match(gone!.error!.message, /unloaded/);
    const again = await pool.load(0, validated);
    const [out] = await pool.run(0, [{ inst: again.inst, topic: "t", payload: enc("x") }]);
    assert.equal(out!.status, 7);
  } finally {
    pool.terminate();
  }
});

/**
 * Worker answers reach the pool through `onmessage`: `garble` changes the
 * next answer of type `t` (a batch's by default) by `change` (by default, a
 * type the pool does not know).
 */
function garbleAnswers(): {
  garble(t?: string, change?: Record<string, unknown>): void;
  restore(): void;
} {
  const onmessage = Object.getOwnPropertyDescriptor(Worker.prototype, "onmessage")!;
  let armed = "";
  let how: Record<string, unknown> = {};
  Object.defineProperty(Worker.prototype, "onmessage", {
    ...onmessage,
    set(this: Worker, handler: (e: MessageEvent) => void) {
      onmessage.set!.call(this, (e: MessageEvent) => {
        if (armed && e.data?.t === armed) {
          armed = "";
          return handler({ data: { ...e.data, ...how } } as MessageEvent);
        }
        handler(e);
      });
    },
  });
  return {
    garble: (t = "ran", change = { t: "garbled" }) => {
      armed = t;
      how = change;
    },
    restore: () => Object.defineProperty(Worker.prototype, "onmessage", onmessage),
  };
}

Deno.test("after a malformed Worker answer, the module reads only committed kv values", async () => {
  const answers = garbleAnswers();
  const e = await env({ workers: 1, faultLimit: 100 });
  try {
    // Each message adds one to the counter at key "n" and returns the new count.
    const counter = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
         (i32.store (i32.const 16) (i32.const 0))
         (drop (call $get (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)))
         (i32.store (i32.const 16) (i32.add (i32.load (i32.const 16)) (i32.const 1)))
         (drop (call $set (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)))
         (i32.load (i32.const 16)))
       (data (i32.const 0) "n")`,
      `(import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))
       (import "edge" "kv_get" (func $get (param i32 i32 i32 i32) (result i32)))`,
    );
    await e.host.install(manifest("counter", { grants: { kv: { max_bytes: 100 } } }), counter);
    const count = async () => (await e.host.deliver("counter", "t", enc("+"))).status;
    assert.equal(await count(), 1);
    assert.equal(await count(), 2);
    // The Worker counted to 3, but its answer could not be read: nothing of it committed.
    answers.garble();
    await assert.rejects(count(), WorkerGoneError);
    assert.equal(await count(), 3, "the count goes on from the committed 2");
    assert.equal(await count(), 4);
    // An answer the pool fails to read at all (no log lines where they belong) is the same.
    answers.garble("ran", { sink: null });
    await assert.rejects(count(), WorkerGoneError);
    assert.equal(await count(), 5, "the count goes on from the committed 4");
  } finally {
    answers.restore();
    await e.dispose();
  }
});

Deno.test("kv writes the runtime refuses are never read back from the Worker's cache", async () => {
  const e = await env({ workers: 1, faultLimit: 100 });
  try {
    // Payload "s<v>": kv_set("k", v), returns its result. "S<v>": the same, then spins a while
    // (its outcome reaches the runtime well after what was sent before it). "g": kv_get("k")
    // length (or -3).
    const body = (init: string) =>
      module(
        `${init}
         (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local i32 i32)
           (if (i32.eq (i32.load8_u (local.get 2)) (i32.const 115))
             (then (return (call $set (i32.const 0) (i32.const 1)
               (i32.add (local.get 2) (i32.const 1)) (i32.sub (local.get 3) (i32.const 1))))))
           (if (i32.eq (i32.load8_u (local.get 2)) (i32.const 83))
             (then
               (local.set 4 (call $set (i32.const 0) (i32.const 1)
                 (i32.add (local.get 2) (i32.const 1)) (i32.sub (local.get 3) (i32.const 1))))
               (loop $l (local.set 5 (i32.add (local.get 5) (i32.const 1)))
                 (br_if $l (i32.lt_u (local.get 5) (i32.const 100000000))))
               (return (local.get 4))))
           (call $get (i32.const 0) (i32.const 1) (i32.const 2000) (i32.const 100)))
         (data (i32.const 0) "k")`,
        `(import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))
         (import "edge" "kv_get" (func $get (param i32 i32 i32 i32) (result i32)))`,
      );
    const m = (version: string, maxBytes: number) =>
      manifest("shrunk", {
        version,
        grants: { kv: { max_bytes: maxBytes } },
        limits: { fuel_per_message: 9_000_000_000 },
      });
    await e.host.install(m("1.0.0", 100), await body(""));
    // Long enough (a few hundred ms, even once V8 optimises the loop) that the message sent
    // 100 ms after the swap began lands while it runs, however the machine is loaded.
    const slowInit = `(func (export "edge_init") (result i32) (local i32)
      (loop $l (local.set 0 (i32.add (local.get 0) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get 0) (i32.const 600000000))))
      (i32.const 0))`;
    // Version 2 allows 4 bytes. A write of 10 by version 1, still running during the
    // swap, fits version 1's grant in the Worker but not the grant it commits under. It runs
    // after version 2's init (the Worker's queue), and spins long enough that its outcome
    // arrives once the swap is done (the install stores the new version first).
    const swap = e.host.install(m("2.0.0", 4), await body(slowInit));
    await new Promise((r) => setTimeout(r, 100));
    const during = e.host.deliver("shrunk", "t", enc("S123456789"));
    await swap;
    // The Worker took the write (kv_set answered 0); its caller learns nothing was kept.
    await assert.rejects(during, (err: unknown) => {
      assert.ok(err instanceof ModuleEffectsRefusedError, String(err));
      assert.match(err.message, /max_bytes 4\b/);
      return true;
    });
    assert.equal(e.host.status("shrunk").kv_bytes, 0, "the runtime refused it");
    assert.equal(e.host.status("shrunk").faults.host, 1, "counted as a host fault");
    assert.equal((await e.host.deliver("shrunk", "t", enc("g"))).status, -3);
    // What the Worker holds from now on is what committed.
    assert.equal((await e.host.deliver("shrunk", "t", enc("s12"))).status, 0);
    assert.equal((await e.host.deliver("shrunk", "t", enc("g"))).status, 2);
    assert.equal(e.host.status("shrunk").kv_bytes, 3);
  } finally {
    await e.dispose();
  }
});

Deno.test("after a malformed answer to a load, the module's initialiser reads only committed kv values", async () => {
  const answers = garbleAnswers();
  const e = await env({ workers: 1 });
  try {
    // edge_init adds one to the counter at key "n"; each message returns the counter.
    const counter = await module(
      `(func (export "edge_init") (result i32)
         (i32.store (i32.const 16) (i32.const 0))
         (drop (call $get (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)))
         (i32.store (i32.const 16) (i32.add (i32.load (i32.const 16)) (i32.const 1)))
         (call $set (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)))
       (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
         (drop (call $get (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)))
         (i32.load (i32.const 16)))
       (data (i32.const 0) "n")`,
      `(import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))
       (import "edge" "kv_get" (func $get (param i32 i32 i32 i32) (result i32)))`,
    );
    const m = manifest("booted", { grants: { kv: { max_bytes: 100 } } });
    // The first load's answer cannot be read: its initialiser's write never commits.
    answers.garble("loaded");
    await assert.rejects(e.host.install(m, counter));
    await e.host.install(m, counter);
    assert.equal((await e.host.deliver("booted", "t", enc("?"))).status, 1, "one boot counted");
  } finally {
    answers.restore();
    await e.dispose();
  }
});
