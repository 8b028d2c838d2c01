/** The fuel rewriter keeps semantics and accounts fuel across calls and every exit path. */
import assert from "node:assert/strict";
import { validateModule } from "../../sandbox/validate.ts";
import { GuestInstance } from "../../sandbox/instance.ts";
import { enc, manifest, module } from "./_helpers.ts";
import { leb128 } from "./_wasm_bytes.ts";

async function run(body: string, payload: Uint8Array, fuel = 1_000_000, meter = true) {
  const v = await validateModule(
    await module(body),
    manifest("t", { limits: { fuel_per_message: fuel } }),
    { meter },
  );
  return GuestInstance.create(v, { logSink: () => {} }).call(enc("t"), payload);
}

/** sum(0..n) computed by a loop in a callee, called through a table, with early exits. */
const BODY = `
  (type $t (func (param i32) (result i32)))
  (table 2 funcref)
  (elem (i32.const 0) $sum $sum)
  (func $sum (param $n i32) (result i32) (local $i i32) (local $acc i32)
    (loop $l
      (if (i32.ge_u (local.get $i) (local.get $n)) (then (return (local.get $acc))))
      (local.set $acc (i32.add (local.get $acc) (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))
    (i32.const -1))
  (func $pick (param i32) (result i32)
    ;; label 2 is the function itself: br_table leaves it like a return
    (block $a (result i32)
      (block $b (result i32) (br_table $a $b 2 (i32.const 300) (local.get 0)))
      (drop)
      (return (i32.const 100)))
    (drop)
    (i32.const 200))
  (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
    (i32.add
      (call_indirect (type $t) (i32.load8_u (local.get 2)) (i32.const 1))
      (call $pick (i32.load8_u offset=1 (local.get 2)))))`;

Deno.test("metered and unmetered modules compute the same results", async () => {
  for (const [n, sel] of [[0, 0], [10, 1], [200, 2], [255, 7]]) {
    const input = new Uint8Array([n, sel]);
    const a = await run(BODY, input);
    const b = await run(BODY, input, 1_000_000, false);
    assert.equal(a.error, undefined);
    assert.equal(a.status, b.status, `n=${n} sel=${sel}`);
    assert.equal(a.status, (n * (n - 1)) / 2 + (sel === 0 ? 200 : sel === 1 ? 100 : 300));
  }
});

Deno.test("fuel spent in callees, loops and branch exits counts against the caller", async () => {
  const small = await run(BODY, new Uint8Array([10, 0]));
  const big = await run(BODY, new Uint8Array([250, 0]));
  assert.ok(big.fuelUsed - small.fuelUsed >= 240 * 5, `${small.fuelUsed} → ${big.fuelUsed}`);
  // The exact budget that suffices, and one less that does not.
  const need = big.fuelUsed;
  assert.equal((await run(BODY, new Uint8Array([250, 0]), need)).status, 31125 + 200);
  assert.equal((await run(BODY, new Uint8Array([250, 0]), need - 1)).error?.kind, "fuel");
});

Deno.test("a recursion that outruns its fuel stops with a fuel fault, not a stack overflow", async () => {
  const out = await run(
    `(func $r (param i32) (result i32) (if (result i32) (local.get 0)
        (then (i32.add (i32.const 1) (call $r (i32.sub (local.get 0) (i32.const 1))))) (else (i32.const 0))))
     (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (call $r (i32.const 5000)))`,
    enc("x"),
    10_000,
  );
  assert.equal(out.error?.kind, "fuel");
  assert.equal(out.fuelUsed, 10_000);
});

Deno.test("a call that traps reports the fuel it was charged up to the trap, not less", async () => {
  // $work loops n times, then traps (out-of-bounds load) or returns: the same charges either way.
  const body = `
    (func $work (param $n i32) (param $trap i32) (result i32) (local $i i32)
      (loop $l
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
      (if (local.get $trap) (then (drop (i32.load (i32.const -4)))))
      (local.get $i))
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
      (call $work (i32.mul (i32.load8_u (local.get 2)) (i32.const 100))
        (i32.load8_u offset=1 (local.get 2))))`;
  const ok = await run(body, new Uint8Array([200, 0]));
  const trapped = await run(body, new Uint8Array([200, 1]));
  assert.equal(ok.status, 20_000);
  assert.equal(trapped.error?.kind, "trap");
  assert.ok(ok.fuelUsed > 20_000 * 5, `${ok.fuelUsed}`);
  assert.equal(trapped.fuelUsed, ok.fuelUsed);
});

Deno.test("fuel burnt by a callee that throws counts when the caller catches (legacy try/catch)", async () => {
  const body = (rounds: string) => `
    (tag $e)
    (func $burn (param $n i32) (local $i i32)
      (loop $l
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
      (throw $e))
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local $k i32)
      (loop $l
        (try (do (call $burn (i32.const 100))) (catch $e))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $l ${rounds}))
      (i32.const 0))`;
  const out = await run(body("(i32.lt_u (local.get $k) (i32.const 1000))"), enc("x"), 10_000_000);
  assert.equal(out.status, 0);
  // 1,000 calls, each looping 100 times over at least 5 instructions.
  assert.ok(out.fuelUsed >= 1000 * 100 * 5, `${out.fuelUsed}`);
  // A loop that only ever catches still runs out of fuel.
  const runaway = await run(body("(i32.const 1)"), enc("x"), 1_000_000);
  assert.equal(runaway.error?.kind, "fuel");
});

/** A module with a callee `burn(n)` that loops n times and throws, and `onMessage` as the handler. */
function exnrefModule(onMessage: number[]): Uint8Array {
  const u = (n: number) => leb128(n);
  const vec = (items: number[][]) => [...u(items.length), ...items.flat()];
  const sec = (id: number, body: number[]) => [id, ...u(body.length), ...body];
  const name = (s: string) => [...u(s.length), ...new TextEncoder().encode(s)];
  const fn = (locals: number[][], code: number[]) => {
    const b = [...vec(locals), ...code];
    return [...u(b.length), ...b];
  };
  // loop { local1 += 1; br_if 0 (local1 < local0) } throw 0
  const burn = [0x03, 0x40, 0x20, 1, 0x41, 1, 0x6a, 0x22, 1, 0x20, 0, 0x49, 0x0d, 0, 0x0b, 0x08, 0];
  return new Uint8Array([
    ...[0, 0x61, 0x73, 0x6d, 1, 0, 0, 0],
    ...sec(
      1,
      vec([
        [0x60, 1, 0x7f, 1, 0x7f],
        [0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f],
        [0x60, 1, 0x7f, 0],
        [0x60, 0, 0],
      ]),
    ),
    ...sec(3, vec([[0], [2], [1]])),
    ...sec(5, vec([[0, 1]])),
    ...sec(13, vec([[0, 3]])), // tag 0: () -> ()
    ...sec(
      7,
      vec([
        [...name("memory"), 2, 0],
        [...name("edge_alloc"), 0, 0],
        [...name("edge_on_message"), 0, 2],
      ]),
    ),
    ...sec(
      10,
      vec([
        fn([], [0x41, 0x80, 0x08, 0x0b]),
        fn([[1, 0x7f]], [...burn, 0x0b]),
        fn([[1, 0x7f]], [...onMessage, 0x0b]),
      ]),
    ),
  ]);
}

Deno.test("fuel burnt by a callee that throws counts where try_table lands: after a block, at a loop top", async () => {
  // wabt's wat2wasm predates try_table (exnref), so these are assembled by hand.
  const callBurn = [0x41, 0xe8, 0x07, 0x10, 1]; // call $burn(1000)
  const cases = {
    // block { try_table (catch_all 0) call $burn end } loop end (a charge after the landing)
    block: [0x02, 0x40, 0x1f, 0x40, 1, 2, 0, ...callBurn, 0x0b, 0x0b, 0x03, 0x40, 0x0b, 0x41, 0],
    // block { loop { br_if 1 (local 4); local 4 = 1; try_table (catch_all 0: the loop) ... } }
    loop: [
      ...[0x02, 0x40, 0x03, 0x40, 0x20, 4, 0x0d, 1, 0x41, 1, 0x21, 4],
      ...[0x1f, 0x40, 1, 2, 0, ...callBurn, 0x0b, 0x0b, 0x0b, 0x41, 0],
    ],
  };
  for (const [where, code] of Object.entries(cases)) {
    const v = await validateModule(exnrefModule(code), manifest("t"));
    const out = GuestInstance.create(v, { logSink: () => {} }).call(enc("t"), enc("x"));
    assert.equal(out.status, 0, where);
    // $burn looped 1,000 times over 8 instructions before it threw.
    assert.ok(out.fuelUsed >= 8000, `${where}: ${out.fuelUsed}`);
  }
});

Deno.test("metering: 201 nested blocks and loops (past the rewriter's initial frame stack) still run and stop on fuel", async () => {
  const depth = 201; // the innermost (index 200) is a loop
  const open = Array.from({ length: depth }, (_, i) => (i % 2 ? "(block" : "(loop")).join(" ");
  const bytes = await module(
    `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
      ${open} (br_if 0 (i32.eqz (local.get 3))) ${")".repeat(depth)}
      (i32.const 7))`,
  );
  const inst = GuestInstance.create(await validateModule(bytes, manifest("deep")), {
    logSink: () => {},
  });
  assert.equal(inst.call(enc("t"), enc("x")).status, 7);
  // An empty payload makes the innermost loop spin: fuel stops it.
  assert.equal(inst.call(enc("t"), new Uint8Array(0)).error?.kind, "fuel");
});
