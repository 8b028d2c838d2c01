import assert from "node:assert/strict";
import { ModuleValidationError } from "../../sandbox/mod.ts";
import { validateModule } from "../../sandbox/validate.ts";
import { sha256Hex } from "../../lib/mod.ts";
import { manifest, module, wat } from "./_helpers.ts";
import { abiExports, HEADER, leb128, section } from "./_wasm_bytes.ts";

const ON_MESSAGE =
  `(func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (i32.const 0))`;

async function reasons(bytes: Uint8Array, m = manifest("t")): Promise<string[]> {
  try {
    await validateModule(bytes, m);
  } catch (err) {
    assert.ok(err instanceof ModuleValidationError, String(err));
    return err.reasons;
  }
  assert.fail("module was accepted");
}

Deno.test("a minimal ABI v1 module passes and reports its digest", async () => {
  const bytes = await module(ON_MESSAGE);
  const v = await validateModule(bytes, manifest("t", { sha256: await sha256Hex(bytes) }));
  assert.equal(v.sha256, await sha256Hex(bytes));
});

Deno.test("empty, truncated and malformed bytes are refused with the reason", async () => {
  const good = await module(ON_MESSAGE);
  assert.match((await reasons(new Uint8Array())).join(), /empty/);
  assert.match((await reasons(good.subarray(0, 5))).join(), /truncated/);
  assert.match(
    (await reasons(good.subarray(0, good.length - 3))).join(),
    /truncated|unexpected end/,
  );
  assert.match(
    (await reasons(new TextEncoder().encode("#!/bin/sh\necho hi\n"))).join(),
    /bad magic/,
  );
  const badVersion = good.slice();
  badVersion[4] = 2;
  assert.match((await reasons(badVersion)).join(), /version/);
  const garbage = good.slice();
  garbage.fill(0xff, 8);
  assert.ok((await reasons(garbage)).length > 0);
});

Deno.test("a digest mismatch is refused naming both digests", async () => {
  const bytes = await module(ON_MESSAGE);
  const r = await reasons(bytes, manifest("t", { sha256: "0".repeat(64) }));
  assert.match(
    r.join(),
    new RegExp(`sha256: manifest says 0{64}, the module's digest is ${await sha256Hex(bytes)}`),
  );
});

Deno.test("every ungranted or unknown import is named", async () => {
  const bytes = await module(
    ON_MESSAGE,
    `(import "edge" "publish" (func (param i32 i32 i32 i32) (result i32)))
     (import "edge" "kv_get" (func (param i32 i32 i32 i32) (result i32)))
     (import "edge" "launch_missiles" (func))
     (import "env" "abort" (func (param i32 i32 i32 i32)))
     (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
     (import "edge" "log" (func (param i32) (result i32)))`,
  );
  const r = await reasons(bytes, manifest("t", { grants: { log: true } }));
  const text = r.join("\n");
  assert.match(text, /import edge\.publish: not granted .*grants\.publish/);
  assert.match(text, /import edge\.kv_get: not granted .*grants\.kv/);
  assert.match(text, /import edge\.launch_missiles: unknown host function/);
  assert.match(text, /import env\.abort: unknown import module "env"/);
  assert.match(text, /import wasi_snapshot_preview1\.fd_write: not granted .*grants\.wasi/);
  assert.match(
    text,
    /import edge\.log: has type \(i32\) -> i32, expected \(i32, i32, i32\) -> \(\)/,
  );
  assert.equal(r.length, 6);
});

Deno.test("imported memory, tables and globals are refused", async () => {
  const bytes = await wat(`(module
    (import "edge" "mem" (memory 1))
    (import "edge" "tbl" (table 1 funcref))
    (import "edge" "g" (global i32))
    (export "memory" (memory 0))
    (func (export "edge_alloc") (param i32) (result i32) (i32.const 0))
    ${ON_MESSAGE})`);
  const text = (await reasons(bytes)).join("\n");
  assert.match(text, /import edge\.mem: imported memories are not allowed/);
  assert.match(text, /import edge\.tbl: imported tables are not allowed/);
  assert.match(text, /import edge\.g: imported globals are not allowed/);
});

Deno.test("missing and mistyped ABI exports are refused", async () => {
  const noExports = await wat(`(module (memory 1))`);
  const text = (await reasons(noExports)).join("\n");
  assert.match(text, /export memory: missing/);
  assert.match(text, /export edge_alloc: missing/);
  assert.match(text, /export edge_on_message: missing/);
  const mistyped = await module(
    `(func (export "edge_on_message") (param i32) (result i32) (i32.const 0))
    (func (export "edge_init") (result i64) (i64.const 0))`,
  );
  const t2 = (await reasons(mistyped)).join("\n");
  assert.match(
    t2,
    /export edge_on_message: has type \(i32\) -> i32, expected \(i32, i32, i32, i32\) -> i32/,
  );
  assert.match(t2, /export edge_init: has type \(\) -> i64/);
});

Deno.test("a 4 GiB declared memory and a ten-million-entry table are refused", async () => {
  const big = await wat(`(module (memory (export "memory") 65536)
    (func (export "edge_alloc") (param i32) (result i32) (i32.const 0)) ${ON_MESSAGE})`);
  assert.match(
    (await reasons(big, manifest("t", { limits: { memory_bytes: 16 << 20 } }))).join(),
    /declared minimum 65536 pages \(4294967296 bytes\) exceeds limits\.memory_bytes 16777216/,
  );
  const table = await module(`(table 10000000 funcref) ${ON_MESSAGE}`);
  assert.match(
    (await reasons(table)).join(),
    /table 0: declared minimum 10000000 entries exceeds the limit/,
  );
  // Many tables, each within the limit, would hold as much: their number and sum are bounded.
  const many = await module(`${"(table 100000 externref)".repeat(17)} ${ON_MESSAGE}`);
  const text = (await reasons(many)).join("\n");
  assert.match(text, /tables: 17 tables declared, at most 16 allowed/);
  assert.match(
    text,
    /tables: declared minimums add up to 1700000 entries, more than the limit of 100000/,
  );
  const fine = await module(`(table 1 funcref) (table 50000 externref) ${ON_MESSAGE}`);
  await validateModule(fine, manifest("t"));
});

/** An ABI v1 module with `types` extra function types and `functions` extra functions. */
function counted(types: number, functions: number): Uint8Array {
  const out = [...HEADER];
  const t = leb128(types + 2);
  t.push(0x60, 1, 0x7f, 1, 0x7f, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f);
  for (let i = 0; i < types; i++) t.push(0x60, 1, 0x7e, 0);
  section(out, 1, t);
  const f = leb128(functions + 2);
  f.push(0, 1);
  for (let i = 0; i < functions; i++) f.push(0);
  section(out, 3, f);
  section(out, 5, [1, 0, 1]);
  section(out, 7, abiExports());
  const c = leb128(functions + 2);
  c.push(4, 0, 0x41, 0, 0x0b, 4, 0, 0x41, 0, 0x0b);
  for (let i = 0; i < functions; i++) c.push(4, 0, 0x41, 0, 0x0b);
  section(out, 10, c);
  return new Uint8Array(out);
}

Deno.test("modules of absurdly many types or functions are refused", async () => {
  await validateModule(counted(1000, 1000), manifest("t"));
  assert.match(
    (await reasons(counted(10_000, 0))).join("\n"),
    /types: 10002 function types, at most 10000 allowed/,
  );
  assert.match(
    (await reasons(counted(0, 100_000))).join("\n"),
    /functions: 100002 functions defined, at most 100000 allowed/,
  );
});

Deno.test("manifest errors name the field", async () => {
  const { parseManifest } = await import("../../sandbox/manifest.ts");
  assert.throws(
    () => parseManifest({ name: "x", version: "1.0.0", limits: { fuel_per_mesage: 5 } }),
    (e: ModuleValidationError) =>
      /limits: Unrecognized key: "fuel_per_mesage"/.test(e.reasons.join()),
  );
  assert.throws(
    () =>
      parseManifest({
        name: "x",
        version: "1.0.0",
        grants: { publish: ["a/#/b"], sensor: ["relative/*"] },
      }),
    (e: ModuleValidationError) => e.reasons.length === 2,
  );
});

/** `edged module validate WASM --manifest MANIFEST [...more]`, from the checkout. */
function validateCli(wasm: string, manifestPath: string, ...more: string[]) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "module", "validate", wasm, "--manifest", manifestPath, ...more],
  }).output();
}

Deno.test("edged module validate exits 0 on a good module and 1 with every reason", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const good = "examples/modules/relay-wat";
    const ok = await validateCli(`${good}/module.wasm`, `${good}/manifest.json`);
    assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
    assert.match(new TextDecoder().decode(ok.stdout), /^ok: relay 1\.0\.0/);

    await Deno.writeFile(
      `${dir}/bad.wasm`,
      await module(
        ON_MESSAGE,
        `(import "edge" "publish" (func (param i32 i32 i32 i32) (result i32)))`,
      ),
    );
    await Deno.writeTextFile(
      `${dir}/m.json`,
      JSON.stringify({ name: "bad", version: "1.0.0", sha256: "1".repeat(64) }),
    );
    const bad = await validateCli(`${dir}/bad.wasm`, `${dir}/m.json`);
    assert.equal(bad.code, 1);
    const err = new TextDecoder().decode(bad.stderr);
    assert.match(err, /sha256: manifest says 1{64}/);
    assert.match(err, /import edge\.publish: not granted/);

    // A refused manifest does not hide what is wrong with the module whatever it says.
    await Deno.writeFile(`${dir}/empty.wasm`, await wat("(module)"));
    await Deno.writeTextFile(`${dir}/m.json`, JSON.stringify({ name: "Bad", version: "1" }));
    const both = await validateCli(`${dir}/empty.wasm`, `${dir}/m.json`, "--json");
    assert.equal(both.code, 1);
    const { reasons } = JSON.parse(new TextDecoder().decode(both.stdout));
    assert.ok(reasons.some((r: string) => r.startsWith("manifest name: ")), reasons.join("\n"));
    assert.ok(reasons.some((r: string) => r.startsWith("manifest version: ")), reasons.join("\n"));
    assert.ok(reasons.includes("export memory: missing (ABI v1 requires an exported memory)"));
    assert.ok(reasons.some((r: string) => r.startsWith("export edge_on_message: missing")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
