/**
 * The load-time rewriter: adds a fuel counter to a module and caps its memory
 * and tables, so V8 enforces the manifest's quotas inside the module itself.
 *
 * Fuel (the idea of Wasmtime's fuel, done by rewriting): one new mutable i64
 * global, set and read by the host through two added exports
 * ({@link FUEL_SET_EXPORT}, {@link FUEL_GET_EXPORT}); the charges inside each
 * function are `meter_function.ts`'s. When the counter drops below zero a
 * charge executes `unreachable`; the host tells a fuel trap from a guest trap
 * by reading the counter (it is negative only after a fuel trap).
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
import type { SnippetCache } from "./fuel_snippets.ts";
import { meterFunction } from "./meter_function.ts";
import { closeSize, openSize, Writer } from "./writer.ts";

/** Export that sets the fuel counter from an f64 (keeps BigInt off the per-call path). */
export const FUEL_SET_EXPORT = "__edged_fuel_set";
/** Export that reads the fuel counter as an f64. */
export const FUEL_GET_EXPORT = "__edged_fuel_get";

/** Options for {@link instrument}. */
export interface InstrumentOptions {
  /** Maximum memory pages (64 KiB) the module may reach. */
  memoryMaxPages: number;
  /** Maximum entries any table may reach. */
  tableMaxEntries: number;
  /** Insert fuel charges. @default true */
  meter?: boolean;
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
 * The section edits of metering: two function types and two functions (the
 * fuel setter and getter), the fuel global, their exports (and the start
 * function's, when it is taken out of the start section), and every body.
 */
function addFuel(edits: Map<number, Edit>, info: ModuleInfo, opts: InstrumentOptions): void {
  const g = info.importedGlobalCount + info.definedGlobalCount;
  const tSet = info.types.length;
  const fSet = info.functionTypes.length;
  const gb = encodeU32(g);
  // (f64) -> () and () -> f64
  edits.set(1, (r, out) => appendEntries(r, out, 2, [0x60, 1, 0x7c, 0, 0x60, 0, 1, 0x7c]));
  edits.set(3, (r, out) => appendEntries(r, out, 2, [...encodeU32(tSet), ...encodeU32(tSet + 1)]));
  // mut i64 = i64.const 0
  edits.set(6, (r, out) => appendEntries(r, out, 1, [0x7e, 0x01, 0x42, 0x00, OP.end]));
  const exports = [
    ...encodeName(FUEL_SET_EXPORT),
    0x00,
    ...encodeU32(fSet),
    ...encodeName(FUEL_GET_EXPORT),
    0x00,
    ...encodeU32(fSet + 1),
  ];
  let exportCount = 2;
  if (opts.exportStartAs !== undefined && info.start !== undefined) {
    exports.push(...encodeName(opts.exportStartAs), 0x00, ...encodeU32(info.start));
    exportCount++;
    edits.set(8, () => false);
  }
  edits.set(7, (r, out) => appendEntries(r, out, exportCount, exports));
  // set: global = i64.trunc_f64_s(param); get: f64.convert_i64_s(global)
  const setBody = [0x00, OP.localGet, 0x00, 0xb0, OP.globalSet, ...gb, OP.end];
  const getBody = [0x00, OP.globalGet, ...gb, 0xb9, OP.end];
  const helpers = [
    ...encodeU32(setBody.length),
    ...setBody,
    ...encodeU32(getBody.length),
    ...getBody,
  ];
  edits.set(10, (r, out) => meterCode(r, out, info, g, helpers));
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
  g: number,
  helpers: number[],
): boolean {
  if (!r) {
    w.u32(2);
    w.bytes(helpers);
    return true;
  }
  const count = r.u32();
  w.u32(count + 2);
  const cache: SnippetCache = new Map();
  for (let f = 0; f < count; f++) {
    const size = r.u32();
    r.need(size);
    const start = r.pos;
    const params = info.functionTypes[info.importedFuncCount + f].params.length;
    const slot = openSize(w);
    meterFunction(r.bytes, start, start + size, params, g, w, f, cache);
    closeSize(w, slot);
    r.pos += size;
  }
  w.bytes(helpers);
  return true;
}
