/** The fuel rewriter keeps semantics and accounts fuel across calls and every exit path. */
import assert from "node:assert/strict";
import { GuestInstance, validateModule } from "../../sandbox/mod.ts";
import { enc, manifest, module } from "./_helpers.ts";

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
