/**
 * A large module is validated, rewritten and compiled on the validator
 * Worker (`sandbox/validator.ts`), not on the runtime's thread: while a
 * 15 MB module is checked, the thread that asked goes on (edged's HTTP
 * server and ingest run there).
 */
import assert from "node:assert/strict";
import { sha256Hex } from "../../lib/mod.ts";
import { ModuleValidationError } from "../../sandbox/mod.ts";
import { ValidatorWorker } from "../../sandbox/validator.ts";
import { manifest } from "./_helpers.ts";
import { abiExports, HEADER, leb128, section } from "./_wasm_bytes.ts";

/**
 * An ABI v1 module of `n` unused functions, each 100 × (i32.const 1, drop):
 * about 300 bytes of code a function, all of which the rewriter meters.
 */
function bigModule(n: number): Uint8Array {
  const out = [...HEADER];
  // (i32) -> i32: edge_alloc; edge_on_message; () -> (): the others.
  section(out, 1, [
    3,
    0x60,
    1,
    0x7f,
    1,
    0x7f,
    0x60,
    4,
    0x7f,
    0x7f,
    0x7f,
    0x7f,
    1,
    0x7f,
    0x60,
    0,
    0,
  ]);
  const funcs = leb128(n + 2);
  funcs.push(0, 1);
  for (let i = 0; i < n; i++) funcs.push(2);
  section(out, 3, funcs);
  section(out, 5, [1, 0, 1]);
  section(out, 7, abiExports());
  const body: number[] = [0];
  for (let i = 0; i < 100; i++) body.push(0x41, 1, 0x1a);
  body.push(0x0b);
  const code = leb128(n + 2);
  code.push(5, 0, 0x41, 0x80, 0x08, 0x0b, 4, 0, 0x41, 0, 0x0b);
  for (let i = 0; i < n; i++) {
    leb128(body.length, code);
    for (const b of body) code.push(b);
  }
  section(out, 10, code);
  return new Uint8Array(out);
}

Deno.test("a large module is checked on the validator Worker: this thread goes on meanwhile", async () => {
  const wasm = bigModule(50_000);
  const validator = new ValidatorWorker();
  try {
    let last = performance.now();
    let gap = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      gap = Math.max(gap, now - last);
      last = now;
    }, 2);
    const start = performance.now();
    let v;
    try {
      v = await validator.validate(wasm, manifest("big"));
    } finally {
      clearInterval(ticker);
    }
    const took = performance.now() - start;
    assert.equal(v.size, wasm.length);
    assert.equal(v.sha256, await sha256Hex(wasm));
    assert.ok(v.module instanceof WebAssembly.Module, "the compiled module comes back");
    assert.ok(
      WebAssembly.Module.exports(v.module).some((e) => e.name === "edge_on_message"),
      "and is the module's",
    );
    // On this thread the parse and the rewrite were one block as long as the whole; here the
    // thread only hands the bytes over.
    assert.ok(gap < took / 3, `this thread stalled ${gap.toFixed(0)} ms of ${took.toFixed(0)} ms`);
    // Refusals come back with their reasons.
    await assert.rejects(
      validator.validate(new Uint8Array([0, 0x61, 0x73, 0x6d, 2, 0, 0, 0]), manifest("bad")),
      (err: unknown) =>
        err instanceof ModuleValidationError && /malformed module/.test(err.reasons.join()),
    );
    assert.deepEqual(await validator.moduleOnly(wasm), []);
  } finally {
    validator.stop();
  }
  await assert.rejects(validator.validate(wasm, manifest("late")), /stopped/);
});
