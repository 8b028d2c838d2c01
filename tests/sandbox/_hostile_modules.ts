/**
 * The hostile modules of issue 11, as WAT, with the manifest each needs: one
 * catalogue for the tests (`hostile_test.ts`) and the "hostile neighbours"
 * benchmark (`scripts/bench/_sandbox_hostile.ts`).
 *
 * @module
 */

/** What a hostile module needs from its surroundings. */
export interface HostileContext {
  /** A regular file the module may read as a sensor. */
  sensorPath: string;
}

/** One hostile module. */
export interface Hostile {
  /** Short name (also the bench row's). */
  name: string;
  /** What it does. */
  what: string;
  /** The module's WAT text. */
  wat: (ctx: HostileContext) => string;
  /** Manifest fields beside name and version (`grants`, `limits`). */
  manifest: (
    ctx: HostileContext,
  ) => { grants?: Record<string, unknown>; limits?: Record<string, unknown> };
  /** True when it stays within its fuel on purpose (it is not stopped, it is bounded). */
  withinFuel?: boolean;
}

const ALLOC = `(func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))`;

/** A module with `memoryPages` of memory whose edge_on_message loops `body` forever. */
function forever(body: string, opts: { imports?: string; pages?: number; extra?: string } = {}) {
  const pages = opts.pages ?? 256;
  return `(module ${opts.imports ?? ""}
    (memory (export "memory") ${pages} ${pages})
    ${ALLOC}
    ${opts.extra ?? ""}
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local $i i32)
      (loop $l ${body} (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l))
      (i32.const 0)))`;
}

/** A module whose edge_on_message runs `pre` once, then `body` `n` times, and returns 0. */
function times(
  n: number,
  body: string,
  opts: { imports?: string; extra?: string; pages?: number; pre?: string } = {},
) {
  const pages = opts.pages ?? 1;
  return `(module ${opts.imports ?? ""}
    (memory (export "memory") ${pages} ${pages})
    ${ALLOC}
    ${opts.extra ?? ""}
    (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32) (local $i i32)
      ${opts.pre ?? ""}
      (loop $l ${body}
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const ${n}))))
      (i32.const 0)))`;
}

const four = "(param i32 i32 i32 i32) (result i32)";
const SIXTEEN_MIB = 16 << 20;

/** The catalogue. */
export const HOSTILES: readonly Hostile[] = [
  {
    name: "fill",
    what: "a loop of memory.fill over its whole 16 MiB memory",
    wat: () => forever(`(memory.fill (i32.const 0) (local.get $i) (i32.const ${SIXTEEN_MIB}))`),
    manifest: () => ({ limits: { memory_bytes: SIXTEEN_MIB } }),
  },
  {
    name: "copy",
    what: "a loop of memory.copy of 8 MiB",
    wat: () => forever("(memory.copy (i32.const 0) (i32.const 8388608) (i32.const 8388608))"),
    manifest: () => ({ limits: { memory_bytes: SIXTEEN_MIB } }),
  },
  {
    name: "table.fill",
    what: "a loop of table.fill over 100,000 entries",
    wat: () =>
      forever("(table.fill 0 (i32.const 0) (ref.null func) (i32.const 100000))", {
        pages: 1,
        extra: "(table 100000 funcref)",
      }),
    manifest: () => ({}),
  },
  {
    name: "random_get",
    what: "a loop of WASI random_get of 16 MiB",
    wat: () =>
      forever(`(drop (call $random (i32.const 0) (i32.const ${SIXTEEN_MIB})))`, {
        imports:
          `(import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))`,
      }),
    manifest: () => ({ grants: { wasi: true }, limits: { memory_bytes: SIXTEEN_MIB } }),
  },
  {
    name: "kv_set",
    what: "a loop of kv_set of new 4-byte keys and values",
    wat: () =>
      forever(
        `(i32.store (i32.const 0) (local.get $i))
         (drop (call $set (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 4)))`,
        { pages: 1, imports: `(import "edge" "kv_set" (func $set ${four}))` },
      ),
    manifest: () => ({ grants: { kv: { max_bytes: 1 << 20 } } }),
  },
  {
    name: "sensor_read",
    what: "a loop of sensor_read",
    wat: ({ sensorPath }) =>
      forever(
        `(drop (call $read (i32.const 0) (i32.const ${sensorPath.length})
          (i32.const 4096) (i32.const 64)))`,
        {
          pages: 1,
          imports: `(import "edge" "sensor_read" (func $read ${four}))`,
          extra: `(data (i32.const 0) "${sensorPath}")`,
        },
      ),
    manifest: ({ sensorPath }) => ({ grants: { sensor: [sensorPath] } }),
  },
  {
    name: "log",
    what: "a flood of 1 KiB log lines",
    wat: () =>
      forever("(call $log (i32.const 1) (i32.const 0) (i32.const 1024))", {
        pages: 1,
        imports: `(import "edge" "log" (func $log (param i32 i32 i32)))`,
      }),
    manifest: () => ({ grants: { log: true } }),
  },
  {
    name: "publish 64 KiB",
    what: "69 publishes of 64 KiB (the largest payload by default) to uplink/big per message",
    wat: () =>
      times(
        69,
        `(drop (call $publish (i32.const 0) (i32.const 10) (i32.const 0) (i32.const 65536)))`,
        {
          pages: 2,
          imports: `(import "edge" "publish" (func $publish ${four}))`,
          extra: `(data (i32.const 0) "uplink/big")`,
        },
      ),
    manifest: () => ({ grants: { publish: ["uplink/#"] } }),
  },
  {
    name: "publish 16 MiB",
    what: "69 publishes of 16 MiB to uplink/big per message (memory 17 MiB, payloads up to 16 MiB)",
    wat: () =>
      times(
        69,
        `(drop (call $publish (i32.const 0) (i32.const 10) (i32.const 0) (i32.const ${SIXTEEN_MIB})))`,
        {
          pages: 272,
          imports: `(import "edge" "publish" (func $publish ${four}))`,
          extra: `(data (i32.const 0) "uplink/big")`,
        },
      ),
    manifest: () => ({
      grants: { publish: ["uplink/#"] },
      limits: { memory_bytes: 17 << 20, max_payload_bytes: SIXTEEN_MIB, fuel_per_message: 1e9 },
    }),
  },
  {
    name: "sensor_read within fuel",
    what: "50 sensor_read calls per message, within its fuel, on every reading",
    wat: ({ sensorPath }) =>
      times(
        50,
        `(drop (call $read (i32.const 0) (i32.const ${sensorPath.length})
          (i32.const 4096) (i32.const 64)))`,
        {
          imports: `(import "edge" "sensor_read" (func $read ${four}))`,
          extra: `(data (i32.const 0) "${sensorPath}")`,
        },
      ),
    manifest: ({ sensorPath }) => ({ grants: { sensor: [sensorPath] } }),
    withinFuel: true,
  },
  {
    name: "kv_get misses within fuel",
    what: "150 kv_get of keys never written (a round trip each), within its fuel, on every reading",
    wat: () =>
      times(
        150,
        `(i32.store (i32.const 0) (i32.add (i32.load (i32.const 8)) (local.get $i)))
         (drop (call $get (i32.const 0) (i32.const 4) (i32.const 64) (i32.const 64)))`,
        {
          imports: `(import "edge" "kv_get" (func $get ${four}))`,
          // Its keys move on by 150 a message, so every kv_get misses the Worker's cache.
          pre: "(i32.store (i32.const 8) (i32.add (i32.load (i32.const 8)) (i32.const 150)))",
        },
      ),
    manifest: () => ({ grants: { kv: { max_bytes: 1 << 20 } } }),
    withinFuel: true,
  },
];
