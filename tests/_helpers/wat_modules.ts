/**
 * WAT text of modules that more than one test or benchmark runs (compile it
 * with wabt's `wat2wasm`; `tests/sandbox/_helpers.ts` has `wat`).
 *
 * @module
 */

/**
 * A rule with state: counts its messages in kv key `n` (kv_get, kv_set), as
 * a threshold rule keeps its state, after spinning `spin` loop iterations per
 * message (a slow module). Needs `grants.kv`.
 */
export function kvCounterWat(spin = 0): string {
  const slow = spin > 0
    ? `(loop $spin (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const ${spin}))))`
    : "";
  return `(module
  (import "edge" "kv_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "n")
  (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local $i i32)
    ${slow}
    (if (i32.ne (call $get (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4)) (i32.const 4))
      (then (i32.store (i32.const 16) (i32.const 0))))
    (i32.store (i32.const 16) (i32.add (i32.load (i32.const 16)) (i32.const 1)))
    (call $set (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 4))))`;
}
