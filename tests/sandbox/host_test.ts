import assert from "node:assert/strict";
import { EdgeError } from "../../sandbox/mod.ts";
import { validateModule } from "../../sandbox/validate.ts";
import { GuestInstance } from "../../sandbox/instance.ts";
import { dec, enc, env, manifest, module, wat } from "./_helpers.ts";

const IMPORTS = `
  (import "edge" "log" (func $log (param i32 i32 i32)))
  (import "edge" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (import "edge" "sensor_read" (func $sensor (param i32 i32 i32 i32) (result i32)))
  (import "edge" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
  (import "edge" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))
  (import "edge" "now_ms" (func $now (result i64)))`;

/**
 * A probe module: the message payload is 5 little-endian i32 words
 * [fn, a, b, c, d]; it calls host function fn (0 log, 1 publish, 2 sensor_read,
 * 3 kv_get, 4 kv_set) with a..d and returns the result.
 */
const PROBE = `
  (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
    (local $f i32) (local $a i32) (local $b i32) (local $c i32) (local $d i32)
    (local.set $f (i32.load (local.get 2)))
    (local.set $a (i32.load offset=4 (local.get 2)))
    (local.set $b (i32.load offset=8 (local.get 2)))
    (local.set $c (i32.load offset=12 (local.get 2)))
    (local.set $d (i32.load offset=16 (local.get 2)))
    (if (i32.eq (local.get $f) (i32.const 0)) (then (call $log (local.get $a) (local.get $b) (local.get $c)) (return (i32.const 0))))
    (if (i32.eq (local.get $f) (i32.const 1)) (then (return (call $publish (local.get $a) (local.get $b) (local.get $c) (local.get $d)))))
    (if (i32.eq (local.get $f) (i32.const 2)) (then (return (call $sensor (local.get $a) (local.get $b) (local.get $c) (local.get $d)))))
    (if (i32.eq (local.get $f) (i32.const 3)) (then (return (call $kv_get (local.get $a) (local.get $b) (local.get $c) (local.get $d)))))
    (if (i32.eq (local.get $f) (i32.const 4)) (then (return (call $kv_set (local.get $a) (local.get $b) (local.get $c) (local.get $d)))))
    (i32.wrap_i64 (call $now)))
  ;; Scratch area at 4096 that tests fill through the payload's tail.
  (func (export "scratch") (result i32) (i32.const 4096))`;

const GRANTS = {
  grants: {
    log: true,
    publish: ["alerts/#"],
    sensor: ["/nonexistent/sensor*"],
    kv: { max_bytes: 64 },
    clock: true,
  },
};

/** Encodes a probe call; `data` is placed at 1024+20 in guest memory (the input buffer). */
function probe(
  fn: number,
  a: number,
  b: number,
  c: number,
  d: number,
  data = new Uint8Array(),
): Uint8Array {
  const out = new Uint8Array(20 + data.length);
  const v = new DataView(out.buffer);
  [fn, a, b, c, d].forEach((x, i) => v.setInt32(i * 4, x, true));
  out.set(data, 20);
  return out;
}
/** Guest address of probe data (payload starts after the 1-byte topic "t" at 1024). */
const DATA = 1024 + 1 + 20;

async function probeHost(over: Record<string, unknown> = GRANTS) {
  const e = await env({ logLinesPerSecond: 5, faultLimit: 1000 });
  await e.host.install(manifest("probe", over), await module(PROBE, IMPORTS));
  const call = (...args: Parameters<typeof probe>) => e.host.deliver("probe", "t", probe(...args));
  return { e, call };
}

Deno.test("out-of-bounds pointers and negative lengths get EdgeError.FAULT, never an exception", async () => {
  const { e, call } = await probeHost();
  try {
    const bad: [number, number][] = [[-1, 4], [0, -1], [65536, 1], [65530, 10], [0x7fffffff, 2], [
      10,
      0x7fffffff,
    ]];
    for (const [p, n] of bad) {
      for (const fn of [1, 3, 4]) {
        const out = await call(fn, p, n, DATA, 4);
        assert.equal(out.error, undefined, `fn ${fn} (${p}, ${n})`);
        assert.equal(out.status, EdgeError.FAULT, `fn ${fn} (${p}, ${n})`);
        const out2 = await call(fn, DATA, 1, p, n);
        assert.equal(
          out2.status,
          fn === 4 && n === 0 ? 0 : EdgeError.FAULT,
          `fn ${fn} out (${p}, ${n})`,
        );
      }
      const log = await call(0, 1, p, n, 0);
      assert.equal(log.error, undefined);
      assert.match(log.logs[0].message, /bad pointer or length/);
    }
    assert.equal(e.host.status("probe").errors, 0);
  } finally {
    await e.dispose();
  }
});

Deno.test("publish only onto granted topics, with MQTT wildcards; ungranted topics get DENIED", async () => {
  const { e, call } = await probeHost();
  try {
    const send = async (topic: string, payload = "p") => {
      const t = enc(topic);
      const data = new Uint8Array([...t, ...enc(payload)]);
      return (await call(1, DATA, t.length, DATA + t.length, payload.length, data)).status;
    };
    assert.equal(await send("alerts/pump-7/temperature"), 0);
    assert.equal(await send("alerts"), 0); // '#' matches the parent level (MQTT 4.7.1.2)
    assert.equal(await send("uplink/telemetry/x"), EdgeError.DENIED);
    assert.equal(await send("alertsX/y"), EdgeError.DENIED);
    assert.equal(await send("alerts/+"), EdgeError.INVALID);
    assert.equal(await send(""), EdgeError.INVALID);
    const published = e.seen.filter((m) => m.source === "module:probe").map((m) => m.topic);
    assert.deepEqual(published, ["alerts/pump-7/temperature", "alerts"]);
  } finally {
    await e.dispose();
  }
});

Deno.test("log lines are capped at 1024 bytes and rate-limited so spam cannot flood the device log", async () => {
  const { e, call } = await probeHost();
  try {
    const long = await call(0, 2, DATA, 5000, 0, new Uint8Array(5000).fill(0x41));
    assert.equal(long.logs[0].message.length, 1024 + " [truncated from 5000 bytes]".length);
    const spam = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local i32)
        (loop $l (call $log (i32.const 1) (i32.const 0) (i32.const 4))
          (local.set 4 (i32.add (local.get 4) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get 4) (i32.const 100000))))
        (i32.const 0))
       (data (i32.const 0) "spam")`,
      `(import "edge" "log" (func $log (param i32 i32 i32)))`,
    );
    await e.host.install(manifest("spam", { limits: { fuel_per_message: 1_000_000_000 } }), spam);
    const out = await e.host.deliver("spam", "t", enc("x"));
    assert.equal(out.status, 0);
    assert.equal(out.logs.length, 100); // the API answer keeps the first 100
    const s = e.host.status("spam");
    assert.ok(
      s.logs_dropped >= 100_000 - 30 && s.logs_dropped < 100_000,
      `dropped ${s.logs_dropped}`,
    );
  } finally {
    await e.dispose();
  }
});

Deno.test("kv: set, get, too-small buffers, missing keys and the max_bytes quota", async () => {
  const { e, call } = await probeHost();
  try {
    const set = async (k: string, v: string) => {
      const kb = enc(k);
      const vb = enc(v);
      return (await call(
        4,
        DATA,
        kb.length,
        DATA + kb.length,
        vb.length,
        new Uint8Array([...kb, ...vb]),
      ))
        .status;
    };
    const get = async (k: string, cap: number) => {
      const kb = enc(k);
      return (await call(3, DATA, kb.length, DATA + 64, cap, kb)).status;
    };
    assert.equal(await set("a", "hello"), 0);
    assert.equal(await get("a", 16), 5);
    assert.equal(await get("a", 2), EdgeError.TOO_BIG);
    assert.equal(await get("zz", 16), EdgeError.NOT_FOUND);
    assert.equal(await set("b", "x".repeat(57)), 0); // 1+5 + 1+57 = 64 bytes: exactly the quota
    assert.equal(await set("c", "y"), EdgeError.QUOTA);
    assert.equal(await set("b", "x".repeat(10)), 0); // overwriting frees space
    assert.equal(await set("c", "y"), 0);
    assert.equal(e.host.status("probe").kv_bytes, 6 + 11 + 2);
    assert.equal(await set("k".repeat(300), "v"), EdgeError.TOO_BIG);
  } finally {
    await e.dispose();
  }
});

Deno.test("sensor_read: granted globs only; '..' and symlinks cannot escape; reads are bounded", async () => {
  const root = await Deno.makeTempDir({ prefix: "edged-sensors-" });
  try {
    await Deno.mkdir(`${root}/hwmon0`);
    await Deno.writeTextFile(`${root}/hwmon0/temp1_input`, "42500\n");
    await Deno.writeTextFile(`${root}/secret`, "top secret");
    await Deno.symlink(`${root}/secret`, `${root}/hwmon0/temp2_input`);
    await Deno.writeTextFile(`${root}/hwmon0/temp3_input`, "9".repeat(100_000));
    const { e, call } = await probeHost({
      ...GRANTS,
      grants: { ...GRANTS.grants, sensor: [`${root}/hwmon*/temp*_input`] },
    });
    try {
      const read = async (path: string, cap = 64) => {
        const p = enc(path);
        return (await call(2, DATA, p.length, DATA + 512, cap, p)).status;
      };
      assert.equal(await read(`${root}/hwmon0/temp1_input`), 6);
      assert.equal(await read(`${root}/hwmon0/temp1_input`, 3), 3);
      assert.equal(await read(`${root}/hwmon0/../secret`), EdgeError.DENIED);
      assert.equal(await read(`${root}/hwmon0/../hwmon0/temp1_input`), 6); // normalised first
      assert.equal(await read(`${root}/hwmon0/temp2_input`), EdgeError.DENIED); // symlink to outside
      assert.equal(await read(`${root}/hwmon0/temp9_input`), EdgeError.NOT_FOUND);
      assert.equal(await read(`hwmon0/temp1_input`), EdgeError.INVALID);
      assert.equal(await read(`${root}/hwmon0/temp3_input`, 60_000), 60_000);
      assert.equal(e.host.status("probe").errors, 0);
    } finally {
      await e.dispose();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("now_ms returns the wall clock", async () => {
  const { e, call } = await probeHost();
  try {
    // The probe returns the low 32 bits of now_ms().
    const low32 = (n: number) => Number(BigInt.asIntN(32, BigInt(n)));
    const before = low32(Date.now());
    const got = (await call(9, 0, 0, 0, 0)).status!;
    assert.ok(got >= before && got - before < 5000, `${got} vs ${before}`);
  } finally {
    await e.dispose();
  }
});

Deno.test("WASI: fd_write goes to the log line by line, args and environ are empty, files do not exist", async () => {
  const bytes = await wat(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "args_sizes_get" (func $a (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_open" (func $o (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_prestat_get" (func $p (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "clock_time_get" (func $c (param i32 i64 i32) (result i32)))
    (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 100) "hello\\nwor")
    (data (i32.const 120) "ld\\n")
    (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
      ;; iovecs at 0: {100, 9}, {120, 3}
      (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 9))
      (i32.store (i32.const 8) (i32.const 120)) (i32.store (i32.const 12) (i32.const 3))
      (drop (call $w (i32.const 1) (i32.const 0) (i32.const 2) (i32.const 16)))
      (if (i32.ne (i32.load (i32.const 16)) (i32.const 12)) (then unreachable))
      (if (call $a (i32.const 20) (i32.const 24)) (then unreachable))
      (if (i32.load (i32.const 20)) (then unreachable))
      (if (i32.ne (call $p (i32.const 3) (i32.const 32)) (i32.const 8)) (then unreachable))
      (if (i32.eqz (call $o (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 40))) (then unreachable))
      (if (call $c (i32.const 0) (i64.const 0) (i32.const 48)) (then unreachable))
      (if (i32.ne (call $c (i32.const 9) (i64.const 0) (i32.const 48)) (i32.const 28)) (then unreachable))
      (if (i32.ne (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 70000)) (i32.const 21)) (then unreachable))
      (if (call $r (i32.const 200) (i32.const 32)) (then unreachable))
      (i32.wrap_i64 (i64.div_u (i64.load (i32.const 48)) (i64.const 1000000000000))))
  )`);
  const v = await validateModule(bytes, manifest("wasi", { grants: { wasi: true } }));
  const lines: string[] = [];
  const inst = GuestInstance.create(v, { logSink: (_m, _l, line) => lines.push(line) });
  const out = inst.call(enc("t"), enc("x"));
  assert.equal(out.error, undefined, String(out.error?.message));
  assert.equal(out.status, Math.floor(Date.now() / 1e6));
  assert.deepEqual(out.logs.map((l) => l.message), ["hello", "world"]);
  assert.deepEqual(lines, ["hello", "world"]);
  assert.equal(dec(enc("ok")), "ok");
});

Deno.test("kv values come back byte for byte: small and large, every byte value, cached and committed", async () => {
  const e = await env();
  try {
    // kv_set("k", payload) unless the payload is empty, then kv_get("k") and publish what it read.
    const echo = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local $n i32)
        (if (i32.gt_u (local.get 3) (i32.const 0))
          (then (drop (call $kv_set (i32.const 0) (i32.const 1) (local.get 2) (local.get 3)))))
        (local.set $n (call $kv_get (i32.const 0) (i32.const 1) (i32.const 8192) (i32.const 4096)))
        (call $publish (i32.const 1) (i32.const 6) (i32.const 8192) (local.get $n)))
       (data (i32.const 0) "kkv/out")`,
      `(import "edge" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
       (import "edge" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))
       (import "edge" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))`,
    );
    await e.host.install(
      manifest("echo", { grants: { kv: { max_bytes: 4096 }, publish: ["kv/#"] } }),
      echo,
    );
    const small = new Uint8Array([0, 1, 0x7f, 0x80, 0xff]);
    const large = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff);
    const stored = () =>
      (e.store.db.prepare("SELECT value FROM module_kv WHERE module = 'echo' AND key = ?")
        .get(enc("k")) as { value: Uint8Array }).value;
    for (const value of [small, large]) {
      const written = await e.host.deliver("echo", "t", value);
      assert.deepEqual(written.published.map((p) => [p.topic, [...p.payload]]), [[
        "kv/out",
        [...value],
      ]]);
      // Read again in a later call (from the Worker's cache), and as committed.
      const read = await e.host.deliver("echo", "t", new Uint8Array());
      assert.deepEqual([...read.published[0].payload], [...value]);
      assert.deepEqual([...stored()], [...value]);
    }
  } finally {
    await e.dispose();
  }
});

Deno.test("kv by range in guest memory: the edges of memory, empty keys and values, every value size class", async () => {
  const { e, call } = await probeHost({
    ...GRANTS,
    grants: { ...GRANTS.grants, kv: { max_bytes: 4096 } },
  });
  const END = 65536; // one page
  try {
    const set = async (k: Uint8Array<ArrayBuffer>, v: Uint8Array<ArrayBuffer>) =>
      (await call(4, DATA, k.length, DATA + k.length, v.length, new Uint8Array([...k, ...v])))
        .status;
    /** kv_get of `k` into [op, op+oc), the key at DATA. */
    const getTo = async (k: Uint8Array<ArrayBuffer>, op: number, oc: number) =>
      (await call(3, DATA, k.length, op, oc, k)).status;
    // Put byte `b` at guest address END-1 (kv_get writes it there): a key or value at the very end.
    assert.equal(await set(enc("last"), new Uint8Array([0xfe])), 0);
    assert.equal(await getTo(enc("last"), END - 1, 1), 1);
    // A key that ends at the end of memory works; one byte further is FAULT.
    assert.equal((await call(4, END - 1, 1, DATA, 3, enc("abc"))).status, 0);
    assert.equal((await call(4, END - 1, 2, DATA, 3, enc("abc"))).status, EdgeError.FAULT);
    assert.equal((await call(3, END - 1, 1, DATA, 3)).status, 3);
    assert.equal((await call(3, END - 1, 2, DATA, 3)).status, EdgeError.FAULT);
    // A value and an output buffer that end at the end of memory work; past it, FAULT.
    assert.equal((await call(4, DATA, 1, END - 1, 1, enc("v"))).status, 0);
    assert.equal((await call(4, DATA, 1, END - 1, 2, enc("v"))).status, EdgeError.FAULT);
    assert.equal(await getTo(enc("v"), END - 1, 1), 1);
    assert.equal(await getTo(enc("v"), END - 1, 2), EdgeError.FAULT);
    assert.equal(await getTo(enc("v"), END, 0), EdgeError.TOO_BIG); // an empty buffer at the end
    // The value stored from the last byte of memory is that byte.
    assert.equal(await getTo(new Uint8Array([0xfe]), DATA + 64, 8), 3);
    // Empty keys are refused (set) and never found (get); empty values are values.
    assert.equal(await set(new Uint8Array(), enc("x")), EdgeError.INVALID);
    assert.equal(await getTo(new Uint8Array(), DATA + 64, 8), EdgeError.NOT_FOUND);
    assert.equal(await set(enc("empty"), new Uint8Array()), 0);
    assert.equal(await getTo(enc("empty"), DATA + 64, 0), 0);
    assert.equal(await getTo(enc("empty"), END, 0), 0);
    // Values and keys of every size class the Worker keeps apart (up to 16, up to 64,
    // above), every byte value, read back later (cached) as they were written.
    const echo = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local $n i32)
        (local.set $n (call $kv_get (local.get 2) (local.get 3) (i32.const 8192) (i32.const 4096)))
        (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (local.get $n))))
        (call $publish (i32.const 0) (i32.const 6) (i32.const 8192) (local.get $n)))
       (data (i32.const 0) "kv/out")`,
      `(import "edge" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
       (import "edge" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))`,
    );
    const bytes = (n: number, seed: number) =>
      Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed * 31) & 0xff);
    const written: [Uint8Array<ArrayBuffer>, Uint8Array<ArrayBuffer>][] = [];
    for (const n of [1, 16, 17, 63, 64, 65, 256]) {
      const [k, v] = [bytes(n, n), bytes(n, n + 1)];
      assert.equal(await set(k, v), 0, `a key and a value of ${n} bytes`);
      written.push([k, v]);
    }
    // All 256 byte values, in values of each size class.
    for (let b = 0; b < 256; b += 16) {
      written.push([enc(`all-${b}`), Uint8Array.from({ length: 16 }, (_, i) => b + i)]);
    }
    const down = Uint8Array.from({ length: 256 }, (_, i) => 255 - i);
    written.push([enc("down64"), down.slice(0, 64)], [enc("down65"), down.slice(0, 65)]);
    written.push([enc("down256"), down]);
    for (const [k, v] of written.slice(7)) assert.equal(await set(k, v), 0);
    await e.host.install(
      manifest("probe", {
        ...GRANTS,
        grants: { ...GRANTS.grants, kv: { max_bytes: 4096 }, publish: ["kv/#"] },
      }),
      echo,
    );
    for (const [k, v] of written) {
      const out = await e.host.deliver("probe", "t", k); // the key is the topic's payload
      assert.equal(out.error, undefined);
      assert.deepEqual([...(out.published[0]?.payload ?? [])], [...v], `key of ${k.length} bytes`);
    }
  } finally {
    await e.dispose();
  }
});

Deno.test("proc_exit ends the call even when the guest catches it (exception handling), and costs it its fuel", async () => {
  // The guest catches every exit with catch_all and goes on looping: it must stop at its next
  // fuel charge, the call's outcome is the exit, and it says how much fuel the call had used.
  const bytes = await wat(`(module
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local $i i32)
      (loop $l
        (try (do (call $exit (i32.const 7))) (catch_all))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (i32.store (i32.const 0) (local.get $i))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 1000000))))
      (local.get $i)))`);
  const budget = 1_000_000_000;
  const v = await validateModule(
    bytes,
    manifest("exits", { grants: { wasi: true }, limits: { fuel_per_message: budget } }),
  );
  const inst = GuestInstance.create(v, { logSink: () => {} });
  const out = inst.call(enc("t"), enc("x"));
  assert.equal(out.status, null);
  assert.equal(out.error?.kind, "exit", String(out.error?.message));
  assert.match(out.error!.message, /proc_exit\(7\)/);
  assert.ok(out.fuelUsed > 0 && out.fuelUsed < 10_000, `fuel used ${out.fuelUsed}`);
  // The guest got no further than its next charge: the loop's first back-edge.
  const view = new DataView(inst.ctx.memory!.buffer);
  assert.ok(view.getUint32(0, true) <= 1, `the guest looped ${view.getUint32(0, true)} times`);

  // A guest that catches the exit and returns: still the exit.
  const returns = await wat(`(module
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
      (try (do (call $exit (i32.const 3))) (catch_all))
      (i32.const 0)))`);
  const v2 = await validateModule(returns, manifest("exits2", { grants: { wasi: true } }));
  const out2 = GuestInstance.create(v2, { logSink: () => {} }).call(enc("t"), enc("x"));
  assert.equal(out2.error?.kind, "exit", JSON.stringify(out2));
  // The next call starts afresh.
  const inst2 = GuestInstance.create(v2, { logSink: () => {} });
  assert.equal(inst2.call(enc("t"), enc("x")).error?.kind, "exit");
});

Deno.test("a trap at the memory cap is a memory fault only when an allocator could have caused it", async () => {
  const trap = async (body: string) => {
    const bytes = await module(
      `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) ${body})`,
    );
    const v = await validateModule(bytes, manifest("traps", { limits: { memory_bytes: 65536 } }));
    return GuestInstance.create(v, { logSink: () => {} }).call(enc("t"), enc("x")).error?.kind;
  };
  assert.equal(await trap("(unreachable)"), "memory");
  assert.equal(await trap("(i32.load (i32.const 70000))"), "memory");
  assert.equal(await trap("(i32.div_u (i32.const 1) (i32.const 0))"), "trap");
  assert.equal(await trap("(i32.trunc_f64_s (f64.const 1e300))"), "trap");
});
