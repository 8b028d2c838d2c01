/**
 * A small structure-aware WebAssembly binary generator (WebAssembly core
 * spec 5.5, binary format): modules with the ABI v1 exports, random imports
 * from the host's namespaces, memories and tables with boundary limits,
 * function bodies assembled from a bank of instruction snippets (loops,
 * recursion, memory.grow, br_table, bulk memory, SIMD, atomics prefixes),
 * and lies in section sizes, vector counts and LEB128 encodings.
 *
 * @module
 */
import { concat } from "../_mutate.ts";
import type { Rng } from "../_prng.ts";

const enc = new TextEncoder();

/** Unsigned LEB128 (5.2.2); `pad` writes an over-long but legal encoding. */
export function uleb(n: number, pad = 0): Uint8Array {
  const out: number[] = [];
  let v = Math.max(0, Math.floor(n));
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v > 0 || pad > 0) b |= 0x80;
    out.push(b);
  } while (v > 0);
  for (let i = 0; i < pad; i++) out.push(i === pad - 1 ? 0x00 : 0x80);
  return new Uint8Array(out);
}

function sleb32(n: number): Uint8Array {
  const out: number[] = [];
  let v = n | 0;
  while (true) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && !(b & 0x40)) || (v === -1 && b & 0x40)) {
      out.push(b);
      return new Uint8Array(out);
    }
    out.push(b | 0x80);
  }
}

const name = (s: string) => concat(uleb(enc.encode(s).length), enc.encode(s));
const vec = (rng: Rng, items: Uint8Array[]) =>
  concat(
    uleb(rng.chance(0.03) ? items.length + rng.pick([1, 1000, 2 ** 32 - 1]) : items.length),
    ...items,
  );

const I32 = 0x7f, I64 = 0x7e, F32 = 0x7d, F64 = 0x7c;
const functype = (params: number[], results: number[]) =>
  concat(
    Uint8Array.of(0x60),
    uleb(params.length),
    Uint8Array.from(params),
    uleb(results.length),
    Uint8Array.from(results),
  );

/** Instruction snippets that leave the stack as they found it (mostly). */
const SNIPPETS: number[][] = [
  [0x01], // nop
  [0x41, 0x00, 0x1a], // i32.const 0; drop
  [0x03, 0x40, 0x0c, 0x00, 0x0b], // loop br 0 end: spins until fuel runs out
  [0x03, 0x40, 0x41, 0x01, 0x0d, 0x00, 0x0b], // loop (br_if 0 (i32.const 1)) end
  [0x02, 0x40, 0x03, 0x40, 0x0c, 0x01, 0x0b, 0x0b], // block loop br 1 end end
  [0x41, 0x01, 0x40, 0x00, 0x1a], // memory.grow 1; drop
  [0x41, 0xff, 0xff, 0x03, 0x40, 0x00, 0x1a], // memory.grow 65535; drop
  [0x41, 0x00, 0x10, 0x00, 0x1a], // call 0 with an i32: recursion when it is edge_alloc
  [0x00], // unreachable
  [0x41, 0x00, 0x28, 0x02, 0x00, 0x1a], // i32.load; drop
  [0x41, 0x7f, 0x28, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x1a], // load at huge offset
  [0x41, 0x00, 0x41, 0x00, 0x41, 0x80, 0x80, 0x04, 0xfc, 0x0b, 0x00], // memory.fill 65536
  [0x41, 0x00, 0x0e, 0x02, 0x00, 0x00, 0x00], // br_table (unbalanced on purpose sometimes)
  [0x42, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f, 0x1a], // i64.const min
  [0xfd, 0x0c, ...Array(16).fill(0), 0x1a], // v128.const; drop
  [0xfe, 0x03, 0x00], // atomic.fence
  [0x04, 0x40, 0x0b], // if without condition (invalid)
  [0x41, 0x01, 0x04, 0x40, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x05, 0x0b], // if loop forever else end
  [0x12, 0x00], // return_call 0
  [0x23, 0x00, 0x1a], // global.get 0; drop
  [0x41, 0x00, 0x11, 0x00, 0x00, 0x1a], // call_indirect type 0 table 0
];

function body(rng: Rng, results: number): Uint8Array {
  const locals = rng.chance(0.05)
    ? concat(uleb(1), uleb(rng.pick([2 ** 32 - 1, 50001, 1_000_000])), Uint8Array.of(I32))
    : concat(uleb(1), uleb(rng.int(0, 3)), Uint8Array.of(rng.pick([I32, I64, F32, F64])));
  const code: number[] = [];
  const depth = rng.chance(0.05) ? rng.pick([100, 1000, 20000]) : 0;
  for (let i = 0; i < depth; i++) code.push(0x02, 0x40); // nested blocks
  for (let i = rng.int(0, 6); i > 0; i--) code.push(...rng.pick(SNIPPETS));
  for (let i = 0; i < depth; i++) code.push(0x0b);
  if (results > 0) code.push(0x41, ...sleb32(rng.chance(0.8) ? 1024 : rng.int(-5, 70000)));
  code.push(0x0b);
  const b = concat(locals, Uint8Array.from(code));
  return concat(uleb(b.length + (rng.chance(0.03) ? rng.int(-3, 3) : 0)), b);
}

function section(rng: Rng, id: number, content: Uint8Array): Uint8Array {
  const lie = rng.chance(0.04) ? rng.pick([-1, 1, 100, 2 ** 31]) : 0;
  return concat(
    Uint8Array.of(id),
    uleb(Math.max(0, content.length + lie), rng.chance(0.05) ? 2 : 0),
    content,
  );
}

const EDGE_IMPORTS: [string, string, Uint8Array][] = [
  ["edge", "log", functype([I32, I32, I32], [])],
  ["edge", "publish", functype([I32, I32, I32, I32], [I32])],
  ["edge", "now_ms", functype([], [I64])],
  ["edge", "kv_get", functype([I32, I32, I32, I32], [I32])],
  ["edge", "sensor_read", functype([I32, I32, I32, I32], [I32])],
  ["wasi_snapshot_preview1", "fd_write", functype([I32, I32, I32, I32], [I32])],
  ["wasi_snapshot_preview1", "proc_exit", functype([I32], [])],
  [
    "wasi_snapshot_preview1",
    "path_open",
    functype([I32, I32, I32, I32, I32, I64, I64, I32, I32], [I32]),
  ],
  ["env", "memory", functype([], [])],
  ["edge", "nope", functype([], [])],
];

/** One generated module. */
export function generateWasm(rng: Rng): Uint8Array {
  // Types 0 and 1 are the ABI's; the rest random.
  const types = [
    functype([I32], [I32]),
    functype([I32, I32, I32, I32], [I32]),
    functype([], [I32]),
  ];
  const imports = Array.from({ length: rng.int(0, 3) }, () => rng.pick(EDGE_IMPORTS));
  for (const [, , t] of imports) types.push(t);
  const importEntries = imports.map(([m, n], i) =>
    m === "env"
      ? concat(name(m), name(n), Uint8Array.of(0x02, 0x00), uleb(1))
      : concat(name(m), name(n), Uint8Array.of(0x00), uleb(3 + i))
  );
  const nImportedFuncs = imports.filter(([m]) => m !== "env").length;
  const funcTypes = [0, 1, 2, ...Array.from({ length: rng.int(0, 3) }, () => rng.int(0, 2))];
  if (rng.chance(0.03)) funcTypes.push(rng.pick([99, 2 ** 32 - 1]));
  const memFlags = rng.chance(0.85) ? rng.pick([0, 1]) : rng.pick([2, 3, 4, 5, 7]);
  const memMin = rng.chance(0.8)
    ? rng.int(1, 4)
    : rng.pick([0, 16, 17, 256, 65536, 65537, 2 ** 32 - 1]);
  const mem = concat(
    Uint8Array.of(memFlags),
    uleb(memMin),
    memFlags & 1
      ? uleb(rng.chance(0.7) ? memMin + 4 : rng.pick([0, 65536, 2 ** 32 - 1]))
      : new Uint8Array(),
  );
  const exp = (n: string, kind: number, idx: number) =>
    concat(name(n), Uint8Array.of(kind), uleb(idx));
  const exports = [
    exp("memory", 0x02, 0),
    exp("edge_alloc", 0x00, nImportedFuncs + 0),
    exp("edge_on_message", 0x00, nImportedFuncs + 1),
  ];
  if (rng.chance(0.5)) exports.push(exp("edge_init", 0x00, nImportedFuncs + 2));
  if (rng.chance(0.05)) {
    exports.push(exp(rng.pick(["__edged_fuel", "memory", "_initialize"]), 0x00, 0));
  }
  const sections: Uint8Array[] = [
    section(rng, 1, vec(rng, types)),
    section(rng, 2, vec(rng, importEntries)),
    section(rng, 3, vec(rng, funcTypes.map((t) => uleb(t)))),
  ];
  if (rng.chance(0.3)) {
    sections.push(
      section(
        rng,
        4,
        vec(rng, [concat(Uint8Array.of(0x70, 0x00), uleb(rng.pick([1, 10, 100001])))]),
      ),
    );
  }
  sections.push(section(rng, 5, vec(rng, [mem])));
  if (rng.chance(0.3)) {
    sections.push(section(rng, 6, vec(rng, [Uint8Array.of(I32, 0x01, 0x41, 0x00, 0x0b)])));
  }
  sections.push(section(rng, 7, vec(rng, exports)));
  if (rng.chance(0.1)) sections.push(section(rng, 8, uleb(nImportedFuncs + rng.int(0, 3))));
  sections.push(section(rng, 10, vec(rng, funcTypes.map((t) => body(rng, t === 99 ? 0 : 1)))));
  if (rng.chance(0.3)) {
    const off = rng.chance(0.7) ? 0 : rng.pick([65535, 65536, 2 ** 31 - 1]);
    const data = concat(
      Uint8Array.of(0x00, 0x41),
      sleb32(off),
      Uint8Array.of(0x0b),
      uleb(4),
      enc.encode("edge"),
    );
    sections.push(section(rng, 11, vec(rng, [data])));
  }
  if (rng.chance(0.2)) {
    sections.push(section(rng, 0, concat(name("name"), rng.bytes(rng.int(0, 20)))));
  }
  if (rng.chance(0.05)) {
    // Out-of-order or duplicated section.
    const i = rng.below(sections.length);
    sections.splice(rng.below(sections.length), 0, sections[i]);
  }
  return concat(Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00), ...sections);
}
