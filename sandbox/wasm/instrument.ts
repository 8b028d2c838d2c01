/**
 * The load-time rewriter: adds a fuel counter to a module and caps its memory
 * and tables, so V8 enforces the manifest's quotas inside the module itself.
 *
 * Fuel (the idea of Wasmtime's fuel, done by rewriting): one new mutable i64
 * global, set, read and charged by the host through three added exports
 * ({@link FUEL_SET_EXPORT}, {@link FUEL_GET_EXPORT}, {@link FUEL_CHARGE_EXPORT});
 * the charges inside each function are `meter_function.ts`'s. When the counter
 * drops below zero a charge executes `unreachable`; the host tells a fuel trap
 * from a guest trap by reading the counter (it is negative only after a fuel
 * trap). A second new global (i32) holds a bulk instruction's length operand
 * while it is charged.
 *
 * Memory and tables: `caps.ts`.
 *
 * This file rewrites the module section by section (5.5.2): sections the
 * rewriter changes are re-encoded, the others copied as they are.
 *
 * @module
 */

import { encodeName, encodeU32, Reader } from "./reader.ts";
import { OP } from "./instructions.ts";
import { type ModuleInfo, SECTION_ORDER } from "./parse.ts";
import { capMemories, capTables } from "./caps.ts";
import type { BulkCost, FuelGlobals, SnippetCache } from "./fuel_snippets.ts";
import { BULK_COSTS } from "../costs.ts";
import { meterFunction } from "./meter_function.ts";
import { closeSize, openSize, Writer } from "./writer.ts";

/** Export that sets the fuel counter from an f64 (keeps BigInt off the per-call path). */
export const FUEL_SET_EXPORT = "__edged_fuel_set";
/** Export that reads the fuel counter as an f64. */
export const FUEL_GET_EXPORT = "__edged_fuel_get";
/**
 * Export that subtracts its f64 argument from the fuel counter and returns what
 * is left (negative: exhausted): how host functions charge their work.
 */
export const FUEL_CHARGE_EXPORT = "__edged_fuel_charge";

/** Options for {@link instrument}. */
export interface InstrumentOptions {
  /** Maximum memory pages (64 KiB) the module may reach. */
  memoryMaxPages: number;
  /** Maximum entries any table may reach. */
  tableMaxEntries: number;
  /** Insert fuel charges. @default true */
  meter?: boolean;
  /** Run-time costs of bulk instructions by 0xFC sub-opcode. @default BULK_COSTS (`costs.ts`) */
  bulkCosts?: Readonly<Record<number, BulkCost>>;
  /**
   * Drop the start section and export the start function under this name, so the
   * host can run it with fuel set and tell a fuel trap from a guest trap.
   */
  exportStartAs?: string;
}

const orderOf = (id: number) => SECTION_ORDER.indexOf(id);

/**
 * Writes one section's content into `out`; false drops the section. `r` is null
 * when the section is absent.
 */
type Edit = (r: Reader | null, out: Writer) => boolean;

/** Output buffer reused between calls (instrumenting is synchronous), so a load allocates once. */
let scratch: Writer | null = null;
/** A scratch buffer grown past this is not kept after the call. */
const SCRATCH_KEEP_BYTES = 4 << 20;

/**
 * Returns the rewritten module bytes.
 * @throws {WasmFormatError} when a function body cannot be decoded.
 */
export function instrument(
  bytes: Uint8Array,
  info: ModuleInfo,
  opts: InstrumentOptions,
): Uint8Array {
  return instrumentThen(bytes, info, opts, (wasm) => wasm.slice());
}

/**
 * Rewrites the module and calls `use` with the result as a view into a buffer
 * that is reused by the next call: valid only until `use` returns (compile it
 * there; `new WebAssembly.Module` copies its input). Saves a copy and an
 * allocation the size of the module per load.
 * @throws {WasmFormatError} when a function body cannot be decoded.
 */
export function instrumentThen<T>(
  bytes: Uint8Array,
  info: ModuleInfo,
  opts: InstrumentOptions,
  use: (wasm: Uint8Array) => T,
): T {
  const out = rewrite(bytes, info, opts);
  try {
    return use(out.buf.subarray(0, out.len));
  } finally {
    if (out.buf.length <= SCRATCH_KEEP_BYTES) scratch = out;
  }
}

function rewrite(bytes: Uint8Array, info: ModuleInfo, opts: InstrumentOptions): Writer {
  const edits = new Map<number, Edit>();
  edits.set(4, (r, out) => r !== null && capTables(r, out, opts.tableMaxEntries));
  edits.set(5, (r, out) => r !== null && capMemories(r, out, opts.memoryMaxPages));
  if (opts.meter ?? true) addFuel(edits, info, opts);

  const out = scratch ?? new Writer();
  scratch = null;
  out.len = 0;
  out.ensure(bytes.length + (bytes.length >> 1) + 256);
  out.copy(bytes, 0, 8);
  const emit = (id: number, edit: Edit, r: Reader | null) => {
    out.byte(id);
    const slot = openSize(out);
    if (edit(r, out)) closeSize(out, slot);
    else out.len = slot - 1; // the section is dropped, id and all
  };
  const flushBefore = (order: number) => {
    for (const [id, edit] of [...edits]) {
      if (orderOf(id) < order) {
        emit(id, edit, null);
        edits.delete(id);
      }
    }
  };
  for (const s of info.sections) {
    if (s.id !== 0) flushBefore(orderOf(s.id));
    const edit = edits.get(s.id);
    if (s.id !== 0 && edit) {
      emit(s.id, edit, new Reader(bytes, s.contentStart, s.end));
      edits.delete(s.id);
    } else {
      out.copy(bytes, s.start, s.end);
    }
  }
  flushBefore(SECTION_ORDER.length);
  return out;
}

/**
 * The section edits of metering: three function types and three functions
 * (the fuel setter, getter and charger), the two globals, the exports (and
 * the start function's, when it is taken out of the start section), and every
 * body.
 */
function addFuel(edits: Map<number, Edit>, info: ModuleInfo, opts: InstrumentOptions): void {
  const g = info.importedGlobalCount + info.definedGlobalCount;
  const gs: FuelGlobals = { fuel: g, scratch: g + 1 };
  const bulk = opts.bulkCosts ?? BULK_COSTS;
  const t0 = info.types.length;
  const f0 = info.functionTypes.length;
  const gb = encodeU32(g);
  // (f64) -> (), () -> f64, (f64) -> f64
  edits.set(
    1,
    (r, out) =>
      appendEntries(r, out, 3, [0x60, 1, 0x7c, 0, 0x60, 0, 1, 0x7c, 0x60, 1, 0x7c, 1, 0x7c]),
  );
  edits.set(
    3,
    (r, out) =>
      appendEntries(r, out, 3, [...encodeU32(t0), ...encodeU32(t0 + 1), ...encodeU32(t0 + 2)]),
  );
  // fuel: mut i64 = i64.const 0; scratch: mut i32 = i32.const 0
  edits.set(
    6,
    (r, out) =>
      appendEntries(r, out, 2, [0x7e, 0x01, 0x42, 0x00, OP.end, 0x7f, 0x01, 0x41, 0x00, OP.end]),
  );
  const exports = [
    ...encodeName(FUEL_SET_EXPORT),
    0x00,
    ...encodeU32(f0),
    ...encodeName(FUEL_GET_EXPORT),
    0x00,
    ...encodeU32(f0 + 1),
    ...encodeName(FUEL_CHARGE_EXPORT),
    0x00,
    ...encodeU32(f0 + 2),
  ];
  let exportCount = 3;
  if (opts.exportStartAs !== undefined && info.start !== undefined) {
    exports.push(...encodeName(opts.exportStartAs), 0x00, ...encodeU32(info.start));
    exportCount++;
    edits.set(8, () => false);
  }
  edits.set(7, (r, out) => appendEntries(r, out, exportCount, exports));
  // set: global = i64.trunc_f64_s(param)
  const setBody = [0x00, OP.localGet, 0x00, 0xb0, OP.globalSet, ...gb, OP.end];
  // get: f64.convert_i64_s(global)
  const getBody = [0x00, OP.globalGet, ...gb, 0xb9, OP.end];
  // charge: global = global - i64.trunc_f64_s(param); f64.convert_i64_s(global)
  const chargeBody = [
    0x00,
    ...[OP.globalGet, ...gb],
    ...[OP.localGet, 0x00, 0xb0],
    0x7d, // i64.sub
    ...[OP.globalSet, ...gb],
    ...[OP.globalGet, ...gb, 0xb9],
    OP.end,
  ];
  const helpers = [setBody, getBody, chargeBody].flatMap((b) => [...encodeU32(b.length), ...b]);
  edits.set(10, (r, out) => meterCode(r, out, info, gs, bulk, helpers));
}

/** Copies a vector section's entries and appends `added` more (already encoded). */
function appendEntries(r: Reader | null, w: Writer, added: number, entries: number[]): boolean {
  if (r) {
    const count = r.u32();
    w.u32(count + added);
    w.copy(r.bytes, r.pos, r.end);
  } else {
    w.u32(added);
  }
  w.bytes(entries);
  return true;
}

/** Rewrites the code section (5.5.13): every body metered, then the fuel helpers' bodies. */
function meterCode(
  r: Reader | null,
  w: Writer,
  info: ModuleInfo,
  gs: FuelGlobals,
  bulk: Readonly<Record<number, BulkCost>>,
  helpers: number[],
): boolean {
  if (!r) {
    w.u32(3);
    w.bytes(helpers);
    return true;
  }
  const count = r.u32();
  w.u32(count + 3);
  const cache: SnippetCache = new Map();
  for (let f = 0; f < count; f++) {
    const size = r.u32();
    r.need(size);
    const start = r.pos;
    const params = info.functionTypes[info.importedFuncCount + f].params.length;
    const slot = openSize(w);
    meterFunction(r.bytes, start, start + size, params, gs, bulk, w, f, cache);
    closeSize(w, slot);
    r.pos += size;
  }
  w.bytes(helpers);
  return true;
}
