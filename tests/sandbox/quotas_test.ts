import assert from "node:assert/strict";
import { ModuleValidationError } from "../../sandbox/mod.ts";
import { validateModule } from "../../sandbox/validate.ts";
import { GuestInstance } from "../../sandbox/instance.ts";
import { dec, enc, env, manifest, module, wat } from "./_helpers.ts";

const SPIN = `(loop $l (br $l))`;
const HANDLED =
  `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (i32.const 0))`;

async function instance(body: string, over: Record<string, unknown> = {}, imports = "") {
  const v = await validateModule(await module(body, imports), manifest("t", over));
  return GuestInstance.create(v, { logSink: () => {} });
}

Deno.test("an infinite loop in edge_on_message stops with a fuel error within its budget", async () => {
  const inst = await instance(
    `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) ${SPIN} (i32.const 0))`,
  );
  const out = inst.call(enc("t"), enc("{}"));
  assert.equal(out.error?.kind, "fuel");
  assert.equal(out.status, null);
  assert.equal(out.fuelUsed, 1_000_000);
  // The instance's fuel is reset per call: the next call faults the same way, not instantly.
  assert.equal(inst.call(enc("t"), enc("{}")).fuelUsed, 1_000_000);
});

Deno.test("fuel_used is reported per call and grows with the work done", async () => {
  const inst = await instance(
    `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local i32)
    (block $b (loop $l (br_if $b (i32.ge_u (local.get 4) (local.get 3)))
      (local.set 4 (i32.add (local.get 4) (i32.const 1))) (br $l)))
    (i32.const 0))`,
  );
  const small = inst.call(enc("t"), new Uint8Array(10));
  const large = inst.call(enc("t"), new Uint8Array(1000));
  assert.equal(small.status, 0);
  assert.ok(small.fuelUsed > 0);
  assert.ok(large.fuelUsed > small.fuelUsed * 50, `${small.fuelUsed} vs ${large.fuelUsed}`);
  // Deterministic: the same input costs the same fuel.
  assert.equal(inst.call(enc("t"), new Uint8Array(10)).fuelUsed, small.fuelUsed);
});

Deno.test("an infinite loop in the start function, _initialize, edge_init or edge_alloc is bounded too", async () => {
  const cases: [string, string][] = [
    ["start function", `(func $s ${SPIN}) (start $s) ${HANDLED}`],
    ["_initialize", `(func (export "_initialize") ${SPIN}) ${HANDLED}`],
    ["edge_init", `(func (export "edge_init") (result i32) ${SPIN} (i32.const 0)) ${HANDLED}`],
  ];
  for (const [what, body] of cases) {
    await assert.rejects(
      async () => {
        const v = await validateModule(await module(body), manifest("t"));
        GuestInstance.create(v, { logSink: () => {} });
      },
      (err: Error) => err.message.startsWith(`${what}: fuel exhausted`),
      what,
    );
  }
  const alloc = await validateModule(
    await wat(`(module (memory (export "memory") 1)
      (func (export "edge_alloc") (param i32) (result i32) ${SPIN} (i32.const 0)) ${HANDLED})`),
    manifest("t"),
  );
  const out = GuestInstance.create(alloc, { logSink: () => {} }).call(enc("t"), enc("x"));
  assert.equal(out.error?.kind, "fuel");
});

Deno.test("deep recursion is a stack overflow fault and the module recovers", async () => {
  const e = await env({ faultLimit: 100 });
  try {
    await e.host.install(
      manifest("rec"),
      await module(
        `(func $r (param i32) (result i32) (call $r (i32.add (local.get 0) (i32.const 1))))
        (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
          (if (result i32) (i32.eq (local.get 3) (i32.const 4)) (then (call $r (i32.const 0))) (else (i32.const 0))))`,
      ),
    );
    const boom = await e.host.deliver("rec", "t", enc("deep"));
    assert.equal(boom.error?.kind, "stack_overflow");
    const fine = await e.host.deliver("rec", "t", enc("1"));
    assert.equal(fine.status, 0);
    assert.equal(fine.error, undefined);
    const s = e.host.status("rec");
    assert.equal(s.faults.stack_overflow, 1);
    assert.equal(s.state, "running");
  } finally {
    await e.dispose();
  }
});

Deno.test("a trap is a fault with the engine's message; state is rebuilt for the next message", async () => {
  const e = await env({ faultLimit: 100 });
  try {
    await e.host.install(
      manifest("trap"),
      await module(`(global $n (mut i32) (i32.const 0))
        (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
          (global.set $n (i32.add (global.get $n) (i32.const 1)))
          (if (i32.eq (local.get 3) (i32.const 4)) (then unreachable))
          (global.get $n))`),
    );
    assert.equal((await e.host.deliver("trap", "t", enc("1"))).status, 1);
    assert.equal((await e.host.deliver("trap", "t", enc("2"))).status, 2);
    const t = await e.host.deliver("trap", "t", enc("boom"));
    assert.equal(t.error?.kind, "trap");
    assert.match(t.error!.message, /unreachable/);
    // A fresh instance after the fault: guest globals start over.
    assert.equal((await e.host.deliver("trap", "t", enc("3"))).status, 1);
    assert.equal(e.host.status("trap").last_error?.kind, "trap");
  } finally {
    await e.dispose();
  }
});

Deno.test("memory.grow past limits.memory_bytes returns -1 inside the module", async () => {
  // Memory bomb: grow one page at a time until refused, return the page count reached.
  const inst = await instance(
    `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
      (block $done (loop $l (br_if $done (i32.lt_s (memory.grow (i32.const 1)) (i32.const 0))) (br $l)))
      (memory.size))`,
    { limits: { memory_bytes: 4 << 20 } },
  );
  const out = inst.call(enc("t"), enc("x"));
  assert.equal(out.error, undefined);
  assert.equal(out.status, 64); // 4 MiB / 64 KiB
  assert.equal(inst.memoryBytes, 4 << 20);
  // One huge grow is refused as well.
  const huge = await instance(
    `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (memory.grow (i32.const 60000)))`,
  );
  assert.equal(huge.call(enc("t"), enc("x")).status, -1);
});

Deno.test("a declared maximum above the limit is lowered, not refused", async () => {
  const v = await validateModule(
    await wat(`(module (memory (export "memory") 1 65536)
      (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (memory.grow (i32.const 16))))`),
    manifest("t", { limits: { memory_bytes: 1 << 20 } }),
  );
  const inst = GuestInstance.create(v, { logSink: () => {} });
  assert.equal(inst.call(enc("t"), enc("x")).status, -1);
  assert.equal(inst.memoryBytes, 65536);
});

Deno.test("table.grow past the table ceiling fails inside the module", async () => {
  const inst = await instance(`(table 1 funcref)
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (table.grow 0 (ref.null func) (i32.const 5000000)))`);
  assert.equal(inst.call(enc("t"), enc("x")).status, -1);
});

Deno.test("a runaway module is quarantined (its messages wait) while its neighbour handles every message", async () => {
  const e = await env({ faultLimit: 2, quarantineMs: 60_000 });
  try {
    await e.host.install(
      manifest("runaway", { subscribe: ["work/#"], limits: { fuel_per_message: 200_000 } }),
      await module(
        `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) ${SPIN} (i32.const 0))`,
      ),
    );
    await e.host.install(
      manifest("neighbour", { subscribe: ["work/#"], grants: { publish: ["done/#"] } }),
      await module(
        `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
          (call $publish (i32.const 0) (i32.const 4) (local.get 2) (local.get 3)))
         (data (i32.const 0) "done")`,
        `(import "edge" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))`,
      ),
    );
    const N = 50;
    for (let i = 0; i < N; i++) e.bus.publish("work/x", enc(String(i)), "test");
    const { until } = await import("./_helpers.ts");
    await until(() =>
      e.seen.filter((m) => m.topic === "done").length === N &&
      e.host.status("runaway").state === "quarantined" &&
      e.host.status("runaway").queue_depth === N - 2
    );
    assert.deepEqual(e.seen.filter((m) => m.topic === "done").map((m) => Number(m.payload)), [
      ...Array(N).keys(),
    ]);
    const r = e.host.status("runaway");
    assert.equal(r.state, "quarantined");
    assert.equal(r.faults.fuel, 2);
    assert.equal(r.messages_in, 2);
    // The rest waits for the quarantine to end (durable delivery drops nothing).
    assert.equal(r.queue_depth, N - 2);
    assert.deepEqual(r.dropped, { oversize: 0, lagging: 0 });
    assert.equal(e.host.status("neighbour").errors, 0);
    assert.ok(dec(new TextEncoder().encode(r.last_error!.message)).includes("fuel exhausted"));
  } finally {
    await e.dispose();
  }
});

Deno.test("quarantine ends after its back-off and a repeat offender waits twice as long", async () => {
  const e = await env({ faultLimit: 1, quarantineMs: 50 });
  try {
    await e.host.install(
      manifest("flaky"),
      await module(
        `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) unreachable)`,
      ),
    );
    await e.host.deliver("flaky", "t", enc("x"));
    const first = e.host.status("flaky");
    assert.equal(first.state, "quarantined");
    await assert.rejects(() => e.host.deliver("flaky", "t", enc("x")), /quarantined until/);
    await new Promise((r) => setTimeout(r, 60));
    await e.host.deliver("flaky", "t", enc("x"));
    const second = e.host.status("flaky");
    assert.equal(second.state, "quarantined");
    const wait = Date.parse(second.quarantined_until!) - Date.now();
    assert.ok(wait > 60 && wait <= 100, `back-off ${wait} ms`);
  } finally {
    await e.dispose();
  }
});

Deno.test("a module that fails validation or initialisation is refused and the running version stays", async () => {
  const e = await env();
  try {
    await e.host.install(
      manifest("keep"),
      await module(
        `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (i32.const 7))`,
      ),
    );
    await assert.rejects(
      () => e.host.install(manifest("keep", { version: "2.0.0" }), new Uint8Array([0, 97, 115])),
      ModuleValidationError,
    );
    const init = await module(`(func (export "edge_init") (result i32) (i32.const 5)) ${HANDLED}`);
    await assert.rejects(
      () => e.host.install(manifest("keep", { version: "2.0.0" }), init),
      (err: ModuleValidationError) => /edge_init returned 5/.test(err.reasons.join()),
    );
    assert.equal(e.host.status("keep").version, "1.0.0");
    assert.equal((await e.host.deliver("keep", "t", enc("x"))).status, 7);
  } finally {
    await e.dispose();
  }
});
