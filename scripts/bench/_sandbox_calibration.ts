/**
 * Part `calibration` of the `sandbox` benchmark section: how much time one
 * fuel unit stands for, measured for every row of the cost table
 * (`sandbox/costs.ts`) on this machine. Each row runs a guest loop doing one
 * kind of work many times and divides the wall time by the fuel the call was
 * charged: the value is nanoseconds per fuel unit, the anchor the unit the
 * table states (`NS_PER_FUEL`); a ratio above 1× means that work is charged
 * less than its time.
 *
 * Instruction mixes are measured cold (the first call of a freshly compiled
 * module runs in V8's baseline compiler, Liftoff, and a long call stays
 * there) and warm (after tier-up to TurboFan); kv and sensor calls run in a
 * sandbox Worker through the module host, as in production.
 *
 * @module
 */

import type { BenchRow } from "./_report.ts";
import { Bus, Store } from "../../runtime/mod.ts";
import type { Manifest } from "../../sandbox/mod.ts";
import { ModuleHost } from "../../sandbox/module_host.ts";
import { validateModule } from "../../sandbox/validate.ts";
import { GuestInstance } from "../../sandbox/instance.ts";
import { BULK_COSTS, hostCost, NS_PER_FUEL } from "../../sandbox/costs.ts";
import { FC } from "../../sandbox/wasm/instructions.ts";
import { manifestFor, wat2wasm } from "./_sandbox_common.ts";

const SECTION = "sandbox";
const enc = new TextEncoder();

/** A module whose edge_on_message runs `body` n times (n: the payload's first u32). */
function loopModule(
  body: string,
  opts: { imports?: string; extra?: string; salt?: number; pre?: string } = {},
) {
  return `(module ${opts.imports ?? ""}
  (memory (export "memory") 256 256)
  (type $t (func (param i32) (result i32)))
  (table $tab 100000 funcref)
  (elem (table $tab) (i32.const 0) func $f $f $f $f $f $f $f $f $f $f $f $f $f $f $f $f)
  (elem $e func $f $f $f $f $f $f $f $f $f $f $f $f $f $f $f $f)
  (data $d "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
  (func $f (param i32) (result i32) (i32.add (local.get 0) (i32.const ${opts.salt ?? 1})))
  ${opts.extra ?? ""}
  (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
    (local $n i32) (local $i i32) (local $acc i32)
    (local.set $n (i32.load (local.get 2)))
    (local.set $acc (i32.load offset=4 (local.get 2)))
    ${opts.pre ?? ""}
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      ${body}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $acc)))`;
}

/** The payload of {@link loopModule}: n iterations and an argument. */
function payload(n: number, arg = 0): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setUint32(0, n, true);
  new DataView(b.buffer).setUint32(4, arg, true);
  return b;
}

/** Instruction mixes of ordinary guest code (the instructions are charged 1 each). */
const MIXES: Record<string, string> = {
  "loop counter only": "",
  "integer arithmetic": `(local.set $acc (i32.xor (i32.mul (local.get $acc) (i32.const 31))
      (i32.shr_u (local.get $acc) (i32.const 3))))`,
  "random loads over 16 MiB": `(local.set $acc (i32.add (local.get $acc) (i32.load
      (i32.and (i32.mul (local.get $i) (i32.const 2654435761)) (i32.const 0xfffffc)))))`,
  "stores": `(i32.store (i32.and (i32.shl (local.get $i) (i32.const 2)) (i32.const 0xfffffc))
      (local.get $acc))`,
  "calls": "(local.set $acc (call $f (local.get $acc)))",
  "indirect calls": `(local.set $acc (call_indirect $tab (type $t) (local.get $acc)
      (i32.and (local.get $i) (i32.const 15))))`,
  "integer division": `(local.set $acc (i32.div_u (i32.add (local.get $acc) (i32.const 12345))
      (i32.or (local.get $i) (i32.const 1))))`,
  "f64 square roots": `(local.set $acc (i32.add (local.get $acc)
      (i32.trunc_sat_f64_u (f64.sqrt (f64.convert_i32_u (local.get $i))))))`,
};

interface Measured {
  nsPerFuel: number;
  nsPerIteration: number;
  fuelPerIteration: number;
}

const run = (inst: GuestInstance, n: number, arg = 0): { ms: number; fuel: number } => {
  const t0 = performance.now();
  const out = inst.call(enc.encode("t"), payload(n, arg));
  const ms = performance.now() - t0;
  if (out.error) throw new Error(`calibration call faulted: ${out.error.message}`);
  return { ms, fuel: out.fuelUsed };
};

const measured = (ms: number, fuel: number, n: number): Measured => ({
  nsPerFuel: (ms * 1e6) / fuel,
  nsPerIteration: (ms * 1e6) / n,
  fuelPerIteration: fuel / n,
});

const noLog = { logSink: () => {} };

async function instance(bytes: Uint8Array, manifest: Manifest): Promise<GuestInstance> {
  return GuestInstance.create(await validateModule(bytes, manifest), noLog);
}

/** Fastest of `rounds` warm calls of `n` iterations (after a warm-up that tiers the code up). */
function warm(inst: GuestInstance, n: number, arg = 0, rounds = 5): Measured {
  for (let i = 0; i < 20; i++) run(inst, Math.max(1, Math.floor(n / 100)), arg);
  let best = { ms: Infinity, fuel: 1 };
  for (let r = 0; r < rounds; r++) {
    const x = run(inst, n, arg);
    if (x.ms < best.ms) best = x;
  }
  return measured(best.ms, best.fuel, n);
}

const big = (name: string) =>
  manifestFor(name, { limits: { fuel_per_message: 10_000_000_000, memory_bytes: 16 << 20 } });

function row(metric: string, m: Measured, note: string): BenchRow {
  return {
    section: SECTION,
    metric: `fuel calibration: ${metric}`,
    edged: m.nsPerFuel,
    anchor: NS_PER_FUEL,
    anchorName: "the unit costs.ts states",
    unit: "ns/fuel",
    target: "<= 1× (fuel >= time)",
    note: `${m.nsPerIteration.toFixed(2)} ns and ${
      m.fuelPerIteration.toFixed(1)
    } fuel per iteration; ${note}`,
  };
}

async function instructionMixes(dir: string, quick: boolean): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const n = quick ? 2_000_000 : 10_000_000;
  let salt = 1000 + Math.floor(Math.random() * 1e6);
  for (const [name, body] of Object.entries(MIXES)) {
    // Cold: unique bytes (V8 would reuse a compiled module of the same bytes), one call each;
    // the fastest of three fresh modules.
    let coldM: Measured | undefined;
    let cold: GuestInstance | undefined;
    for (let i = 0; i < 3; i++) {
      const coldBytes = await wat2wasm(dir, "mix", loopModule(body, { salt: salt++ }));
      cold = await instance(coldBytes, big("mix"));
      const c = run(cold, n);
      const m = measured(c.ms, c.fuel, n);
      if (!coldM || m.nsPerFuel < coldM.nsPerFuel) coldM = m;
    }
    const w = warm(cold!, n);
    const worst = coldM!.nsPerFuel > w.nsPerFuel ? coldM! : w;
    rows.push(row(
      name,
      worst,
      `cold (Liftoff) ${coldM!.nsPerFuel.toFixed(3)}, warm (TurboFan) ${
        w.nsPerFuel.toFixed(3)
      } ns/fuel; the row is the worse`,
    ));
  }
  return rows;
}

async function bulk(dir: string, quick: boolean): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const cases: [string, number, string, number, number][] = [
    // name, FC sub-op, body, iterations, length operand
    [
      "memory.fill 1 MiB, warm pages",
      FC.memoryFill,
      "(memory.fill (i32.const 0) (local.get $i) (local.get $acc))",
      200,
      1 << 20,
    ],
    [
      "memory.fill 64 B",
      FC.memoryFill,
      "(memory.fill (i32.const 0) (local.get $i) (local.get $acc))",
      1_000_000,
      64,
    ],
    [
      "memory.copy 1 MiB",
      FC.memoryCopy,
      "(memory.copy (i32.const 0) (i32.const 8388608) (local.get $acc))",
      200,
      1 << 20,
    ],
    [
      "memory.copy 64 B",
      FC.memoryCopy,
      "(memory.copy (i32.const 0) (i32.const 8388608) (local.get $acc))",
      1_000_000,
      64,
    ],
    [
      "memory.init 64 B",
      FC.memoryInit,
      "(memory.init $d (i32.const 0) (i32.const 0) (local.get $acc))",
      1_000_000,
      64,
    ],
    [
      "table.fill 100,000 entries",
      FC.tableFill,
      "(table.fill $tab (i32.const 0) (ref.null func) (local.get $acc))",
      50,
      100_000,
    ],
    [
      "table.copy 50,000 entries",
      FC.tableCopy,
      "(table.copy $tab $tab (i32.const 0) (i32.const 50000) (local.get $acc))",
      50,
      50_000,
    ],
    [
      "table.init 16 entries",
      FC.tableInit,
      "(table.init $tab $e (i32.const 0) (i32.const 0) (local.get $acc))",
      200_000,
      16,
    ],
  ];
  for (const [name, sub, body, iterations, len] of cases) {
    const n = quick ? Math.ceil(iterations / 4) : iterations;
    const inst = await instance(await wat2wasm(dir, "bulk", loopModule(body)), big("bulk"));
    const cost = BULK_COSTS[sub];
    rows.push(row(
      name,
      warm(inst, n, len, 3),
      `charged ${cost.base} + ${cost.perByte} per ${name.startsWith("table") ? "entry" : "byte"}`,
    ));
  }
  // First touch: a fresh instance fills its whole 16 MiB once (the kernel maps and zeroes
  // every page on the way), which is what memory.fill of fresh memory costs.
  const fill = await wat2wasm(
    dir,
    "fill",
    loopModule("(memory.fill (i32.const 0) (i32.const 1) (local.get $acc))"),
  );
  const module = await validateModule(fill, big("fill"));
  let best: Measured | undefined;
  for (let r = 0; r < (quick ? 3 : 7); r++) {
    const inst = GuestInstance.create(module, noLog);
    const x = run(inst, 1, 16 << 20);
    const m = measured(x.ms, x.fuel, 1);
    if (!best || m.nsPerFuel < best.nsPerFuel) best = m;
  }
  const c = BULK_COSTS[FC.memoryFill];
  rows.push({
    ...row(
      "memory.fill 16 MiB of fresh pages",
      best!,
      `charged ${c.perByte} per byte; the first touch of each page (by any instruction) costs ` +
        "this once per instance, bounded by limits.memory_bytes",
    ),
    target: "once per instance",
  });
  return rows;
}

/** In-process host calls: the guest loop calls `call` n times. */
async function hostCalls(dir: string, quick: boolean): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const four = "(param i32 i32 i32 i32) (result i32)";
  const cases: {
    name: string;
    key: string;
    imports: string;
    body: string;
    n: number;
    arg: number;
    grants: Record<string, unknown>;
    limits?: Record<string, unknown>;
  }[] = [
    {
      name: "log, 16 B",
      key: "edge.log",
      imports: `(import "edge" "log" (func $h (param i32 i32 i32)))`,
      body: "(call $h (i32.const 1) (i32.const 4096) (local.get $acc))",
      n: 200_000,
      arg: 16,
      grants: { log: true },
    },
    {
      name: "log, 1024 B",
      key: "edge.log",
      imports: `(import "edge" "log" (func $h (param i32 i32 i32)))`,
      body: "(call $h (i32.const 1) (i32.const 4096) (local.get $acc))",
      n: 50_000,
      arg: 1024,
      grants: { log: true },
    },
    {
      name: "publish, 16 B",
      key: "edge.publish",
      imports: `(import "edge" "publish" (func $h ${four}))`,
      body: "(drop (call $h (i32.const 0) (i32.const 1) (i32.const 4096) (local.get $acc)))",
      n: 10_000,
      arg: 16,
      grants: { publish: ["#"] },
    },
    {
      name: "publish, 64 KiB",
      key: "edge.publish",
      imports: `(import "edge" "publish" (func $h ${four}))`,
      body: "(drop (call $h (i32.const 0) (i32.const 1) (i32.const 4096) (local.get $acc)))",
      n: 200,
      arg: 65536,
      grants: { publish: ["#"] },
    },
    {
      name: "now_ms",
      key: "edge.now_ms",
      imports: `(import "edge" "now_ms" (func $h (result i64)))`,
      body: "(drop (call $h))",
      n: 1_000_000,
      arg: 0,
      grants: { clock: true },
    },
    {
      name: "WASI random_get, 16 B",
      key: "wasi_snapshot_preview1.random_get",
      imports:
        `(import "wasi_snapshot_preview1" "random_get" (func $h (param i32 i32) (result i32)))`,
      body: "(drop (call $h (i32.const 4096) (local.get $acc)))",
      n: 200_000,
      arg: 16,
      grants: { wasi: true },
    },
    {
      name: "WASI random_get, 64 KiB",
      key: "wasi_snapshot_preview1.random_get",
      imports:
        `(import "wasi_snapshot_preview1" "random_get" (func $h (param i32 i32) (result i32)))`,
      body: "(drop (call $h (i32.const 4096) (local.get $acc)))",
      n: 2_000,
      arg: 65536,
      grants: { wasi: true },
    },
    {
      name: "WASI fd_write, 16 B lines",
      key: "wasi_snapshot_preview1.fd_write",
      imports: `(import "wasi_snapshot_preview1" "fd_write" (func $h ${four}))`,
      body: "(i32.store (i32.const 2052) (local.get $acc)) " +
        "(drop (call $h (i32.const 1) (i32.const 2048) (i32.const 1) (i32.const 2040)))",
      n: 100_000,
      arg: 16,
      grants: { wasi: true },
    },
    {
      name: "WASI fd_write, 4 KiB",
      key: "wasi_snapshot_preview1.fd_write",
      imports: `(import "wasi_snapshot_preview1" "fd_write" (func $h ${four}))`,
      body: "(i32.store (i32.const 2052) (local.get $acc)) " +
        "(drop (call $h (i32.const 1) (i32.const 2048) (i32.const 1) (i32.const 2040)))",
      n: 20_000,
      arg: 4096,
      grants: { wasi: true },
    },
    {
      name: "WASI clock_time_get",
      key: "wasi_snapshot_preview1.clock_time_get",
      imports:
        `(import "wasi_snapshot_preview1" "clock_time_get" (func $h (param i32 i64 i32) (result i32)))`,
      body: "(drop (call $h (i32.const 1) (i64.const 0) (i32.const 2040)))",
      n: 500_000,
      arg: 0,
      grants: { wasi: true },
    },
    {
      name: "WASI sched_yield (a function without a row)",
      key: "wasi_snapshot_preview1.sched_yield",
      imports: `(import "wasi_snapshot_preview1" "sched_yield" (func $h (result i32)))`,
      body: "(drop (call $h))",
      n: 1_000_000,
      arg: 0,
      grants: { wasi: true },
    },
  ];
  for (const c of cases) {
    // Memory: "u/" at 0 (the topic), fd_write's iovec at 2048 -> (4096, len), bytes at 4096.
    const extra = `(data (i32.const 0) "u/") (data (i32.const 2048) "\\00\\10\\00\\00")
      (data (i32.const 4096) "${"a\\0a".repeat(64)}")`;
    const bytes = await wat2wasm(dir, "host", loopModule(c.body, { imports: c.imports, extra }));
    const m = manifestFor("host", {
      grants: c.grants,
      limits: {
        fuel_per_message: 10_000_000_000,
        memory_bytes: 16 << 20,
        max_payload_bytes: 1 << 20,
        publish_messages_per_call: 10_000,
        publish_bytes_per_call: 16 << 20,
        publish_messages_per_second: 100_000,
        publish_bytes_per_second: 256 << 20,
      },
    });
    const inst = await instance(bytes, m);
    const n = quick ? Math.ceil(c.n / 4) : c.n;
    const cost = hostCost(c.key);
    rows.push(row(
      c.name,
      warm(inst, n, c.arg, 3),
      `charged ${cost.base} + ${cost.perByte}/B (${c.key})`,
    ));
  }
  return rows;
}

/** kv and sensor calls from a module in a sandbox Worker, answered by the runtime's thread. */
async function workerCalls(dir: string, quick: boolean): Promise<BenchRow[]> {
  const dataDir = await Deno.makeTempDir({ dir });
  const sensor = `${dataDir}/temp1_input`;
  await Deno.writeTextFile(sensor, "42000\n");
  const store = Store.open(dataDir);
  // The whole runtime's thread for this module: the rows measure calls, not the thread share.
  const host = await ModuleHost.open({ dataDir, store, bus: new Bus(), threadMsPerSecond: 1000 });
  const four = "(param i32 i32 i32 i32) (result i32)";
  const imports = `(import "edge" "kv_get" (func $get ${four}))
    (import "edge" "kv_set" (func $set ${four}))
    (import "edge" "sensor_read" (func $sensor ${four}))`;
  const extra = `(data (i32.const 0) "${sensor}")`;
  const get = "(drop (call $get (i32.const 4000) (i32.const 4) (i32.const 8192) (i32.const 64)))";
  const set = "(drop (call $set (i32.const 4000) (i32.const 4) (i32.const 4096) (local.get $acc)))";
  const cases: { name: string; key: string; body: string; n: number; arg: number; pre?: string }[] =
    [
      {
        name: "kv_get, a key the Worker caches",
        key: "edge.kv_get",
        // The key is set first, so every kv_get copies a 16-byte value from the cache.
        pre: "(drop (call $set (i32.const 4000) (i32.const 4) (i32.const 4096) (i32.const 16)))",
        body: get,
        n: 100_000,
        arg: 0,
      },
      {
        name: "kv_get, a miss each time (a round trip)",
        key: "edge.kv_get.miss",
        body: `(i32.store (i32.const 4000) (i32.add (local.get $acc) (local.get $i))) ${get}`,
        n: 5_000,
        arg: 1,
      },
      { name: "kv_set, 16 B", key: "edge.kv_set", body: set, n: 300, arg: 16 },
      { name: "kv_set, 4 KiB", key: "edge.kv_set", body: set, n: 300, arg: 4096 },
      {
        name: "sensor_read, 6 B file",
        key: "edge.sensor_read",
        body: `(drop (call $sensor (i32.const 0) (i32.const ${sensor.length})
        (i32.const 8192) (i32.const 64)))`,
        n: 3_000,
        arg: 0,
      },
    ];
  const rows: BenchRow[] = [];
  try {
    await host.start();
    let i = 0;
    for (const c of cases) {
      const m = manifestFor(`w${i++}`, {
        grants: { kv: { max_bytes: 64 << 20, max_value_bytes: 1 << 20 }, sensor: [sensor] },
        limits: { fuel_per_message: 10_000_000_000, memory_bytes: 16 << 20 },
      });
      const bytes = await wat2wasm(
        dir,
        "workercall",
        loopModule(c.body, { imports, extra, pre: c.pre }),
      );
      await host.install(m, bytes);
      const n = quick ? Math.ceil(c.n / 4) : c.n;
      let best: Measured | undefined;
      for (let r = 0; r < 3; r++) {
        // A miss needs keys never asked for: each round starts past the last one's.
        const arg = c.key === "edge.kv_get.miss" ? 1 + r * 1_000_000 : c.arg;
        const t0 = performance.now();
        const out = await host.deliver(m.name, "t", payload(n, arg));
        const ms = performance.now() - t0;
        if (out.error) throw new Error(`${c.name}: ${out.error.message}`);
        const x = measured(ms, out.fuelUsed, n);
        if (!best || x.nsPerFuel < best.nsPerFuel) best = x;
      }
      const cost = hostCost(c.key);
      rows.push(
        row(c.name, best!, `charged ${cost.base} + ${cost.perByte}/B (${c.key}), in a Worker`),
      );
    }
  } finally {
    await host.stop();
    store.close();
  }
  return rows;
}

/** The calibration rows: instruction mixes, bulk instructions, host calls. */
export async function calibration(dir: string, quick: boolean): Promise<BenchRow[]> {
  return [
    ...await instructionMixes(dir, quick),
    ...await bulk(dir, quick),
    ...await hostCalls(dir, quick),
    ...await workerCalls(dir, quick),
  ];
}
