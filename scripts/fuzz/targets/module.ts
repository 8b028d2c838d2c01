/**
 * Fuzz target `module`: module bytes through `validateModule` (sandbox:
 * parser, import/export checks, fuel and memory rewriter, compile) with a
 * manifest that grants everything, and every accepted module instantiated
 * and sent one message. Refusals must be `ModuleValidationError`s, runtime
 * problems `ModuleFault`s or a call outcome with an `error`; a module that
 * spins must be stopped by fuel (a hang past the bound is a finding), and
 * memory must stay within `limits.memory_bytes` (oracle).
 *
 * @module
 */
import { ModuleFault, ModuleValidationError } from "../../../sandbox/mod.ts";
import { validateModule } from "../../../sandbox/validate.ts";
import { GuestInstance } from "../../../sandbox/instance.ts";
import { parseManifest } from "../../../sandbox/manifest.ts";
import { reasonKind } from "./_reasons.ts";
import { type FuzzTarget, type Harness, OracleViolation } from "../_target.ts";
import { generateWasm } from "./_wasm_gen.ts";

const ROOT = new URL("../../../", import.meta.url);
const MEMORY_BYTES = 4 * 65536;

const MANIFEST = parseManifest({
  name: "fuzz",
  version: "1.0.0",
  subscribe: ["#"],
  grants: {
    log: true,
    publish: ["#"],
    // The second grant would make a backtracking matcher take minutes per call.
    sensor: ["/nonexistent/*", "/*a*a*a*a*a*a*a*a*a*a*a*a*b"],
    kv: { max_bytes: 4096 },
    clock: true,
    random: true,
    wasi: true,
  },
  limits: { memory_bytes: MEMORY_BYTES, fuel_per_message: 200_000, max_payload_bytes: 4096 },
});

/** Hand-written modules that stress the quotas, compiled with wabt's wat2wasm. */
const WAT: string[] = [
  `(module (import "edge" "sensor_read" (func $s (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1) (data (i32.const 0) "/${"a".repeat(60)}")
    (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
      (drop (call $s (i32.const 0) (i32.const 61) (i32.const 2048) (i32.const 64))) (i32.const 0)))`,
  `(module (memory (export "memory") 1)
    (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (loop (br 0)) (i32.const 0)))`,
  `(module (memory (export "memory") 1)
    (func $f (export "edge_alloc") (param i32) (result i32) (call $f (local.get 0)))
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (i32.const 0)))`,
  `(module (memory (export "memory") 1 65536)
    (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
      (loop (br_if 0 (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) (i32.const 0)))`,
  `(module (import "edge" "publish" (func $p (param i32 i32 i32 i32) (result i32)))
    (import "edge" "log" (func $l (param i32 i32 i32)))
    (memory (export "memory") 1) (data (i32.const 0) "uplink/x")
    (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
      (call $l (i32.const 3) (i32.const 0) (i32.const 70000))
      (drop (call $p (i32.const 0) (i32.const 8) (local.get 2) (local.get 3)))
      (call $p (i32.const 65530) (i32.const 100) (i32.const 0) (i32.const -1))))`,
  `(module (memory (export "memory") 1) (table 2 funcref) (elem (i32.const 0) $a)
    (type $t (func (param i32) (result i32)))
    (func $a (type $t) (i32.add (local.get 0) (i32.const 1)))
    (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
      (call_indirect (type $t) (local.get 1) (local.get 1))))`,
];

async function wat2wasm(text: string): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir({ prefix: "fuzz-wat-" });
  try {
    await Deno.writeTextFile(`${dir}/m.wat`, text);
    const out = await new Deno.Command("wat2wasm", {
      args: [`${dir}/m.wat`, "-o", `${dir}/m.wasm`],
      stderr: "piped",
    }).output();
    if (!out.success) throw new Error(`wat2wasm: ${new TextDecoder().decode(out.stderr)}`);
    return await Deno.readFile(`${dir}/m.wasm`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function setup(): Promise<Harness> {
  const seeds: Uint8Array[] = [];
  for (const ex of ["relay-wat", "threshold-alert-c", "moving-average-as"]) {
    seeds.push(await Deno.readFile(new URL(`examples/modules/${ex}/module.wasm`, ROOT)));
  }
  for (const w of WAT) seeds.push(await wat2wasm(w));
  const topic = new TextEncoder().encode("sensors/dev/temperature");
  const payload = new TextEncoder().encode('{"value": 71.5}');
  return {
    seeds,
    generate: generateWasm,
    async run(input) {
      const validated = await validateModule(input, MANIFEST);
      let inst: GuestInstance;
      try {
        inst = GuestInstance.create(validated, { logSink: () => {} });
      } catch (err) {
        if (err instanceof ModuleFault) return `init-fault:${err.kind}`;
        throw err;
      }
      const out = inst.call(topic, payload);
      if (inst.memoryBytes > MEMORY_BYTES) {
        throw new OracleViolation(
          `memory grew to ${inst.memoryBytes} bytes, limit ${MEMORY_BYTES}`,
        );
      }
      if (out.fuelUsed > 200_000 && out.error?.kind !== "fuel") {
        throw new OracleViolation(`call used ${out.fuelUsed} fuel of 200000 without a fuel fault`);
      }
      return out.error ? `call-fault:${out.error.kind}` : "accepted";
    },
    classify: (err) =>
      err instanceof ModuleValidationError && err.reasons.length > 0
        ? `ModuleValidationError/${reasonKind(err.reasons[0])}`
        : undefined,
  };
}

/** Module bytes through validation, instantiation and one call. */
export const moduleTarget: FuzzTarget = {
  name: "module",
  description: "wasm module bytes (sandbox validateModule, GuestInstance.create and call)",
  setup,
};
