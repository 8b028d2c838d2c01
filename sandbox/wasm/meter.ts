/**
 * The load-time rewriter: adds a fuel counter to a module and caps its memory
 * and tables, so V8 enforces the manifest's quotas inside the module itself.
 *
 * Fuel (the idea of Wasmtime's fuel, done by rewriting): one new mutable i64
 * global, exported as {@link FUEL_EXPORT}. A charge is inserted at every
 * function entry and at the top of every `loop` body (the target of its
 * back-edges). Each charge subtracts the number of instructions of the
 * straight-line region it heads (the function's or loop's own instructions,
 * nested loops excluded; both arms of an `if` counted), so a charge is an upper
 * bound of the work until the next charge. When the counter drops below zero the
 * charge executes `unreachable`; the host tells a fuel trap from a guest trap by
 * reading the counter (it is negative only after a fuel trap).
 *
 * Memory: the single memory's maximum is set to min(declared, cap) pages, so
 * `memory.grow` past the cap returns -1 in the guest (Core spec 4.4.7.12).
 * Tables: the maximum is capped the same way so `table.grow` fails too.
 *
 * @module
 */

import { encodeName, encodeS64, encodeU32, Reader, WasmFormatError } from "./reader.ts";
import { OP, skipInstruction } from "./ops.ts";
import { type ModuleInfo, readLimits, readValType } from "./parse.ts";

/** Name of the exported fuel global added by {@link instrument}. */
export const FUEL_EXPORT = "__edged_fuel";

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

class Writer {
  buf = new Uint8Array(1024);
  len = 0;
  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  bytes(b: ArrayLike<number>): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  u32(v: number): void {
    this.bytes(encodeU32(v));
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Order in which sections must appear (5.5.2); used to place a new global section. */
const ORDER = [0, 1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];
const orderOf = (id: number) => ORDER.indexOf(id);

/**
 * Returns the rewritten module bytes.
 * @throws {WasmFormatError} when a function body cannot be decoded.
 */
export function instrument(
  bytes: Uint8Array,
  info: ModuleInfo,
  opts: InstrumentOptions,
): Uint8Array {
  const meter = opts.meter ?? true;
  const fuelGlobal = info.importedGlobalCount + info.definedGlobalCount;
  const out = new Writer();
  out.ensure(bytes.length + (bytes.length >> 2) + 64);
  out.bytes(bytes.subarray(0, 8));
  let globalDone = !meter;
  let exportDone = !meter;

  const section = (id: number, content: Uint8Array) => {
    out.bytes([id]);
    out.u32(content.length);
    out.bytes(content);
  };
  const newGlobalEntry = [0x7e, 0x01, 0x42, 0x00, OP.end]; // mut i64 = i64.const 0
  const startExport = meter && opts.exportStartAs !== undefined && info.start !== undefined
    ? [...encodeName(opts.exportStartAs), 0x00, ...encodeU32(info.start)]
    : [];
  const newExportEntry = [...encodeName(FUEL_EXPORT), 0x03, ...encodeU32(fuelGlobal)];
  const newExports = startExport.length ? 2 : 1;
  const exportEntries = [...newExportEntry, ...startExport];

  for (const s of info.sections) {
    if (s.id !== 0) {
      if (!globalDone && orderOf(s.id) > orderOf(6)) {
        section(6, Uint8Array.from([1, ...newGlobalEntry]));
        globalDone = true;
      }
      if (!exportDone && orderOf(s.id) > orderOf(7)) {
        section(7, Uint8Array.from([newExports, ...exportEntries]));
        exportDone = true;
      }
    }
    const r = new Reader(bytes, s.contentStart, s.end);
    switch (s.id) {
      case 4:
        section(4, capTables(r, opts.tableMaxEntries));
        break;
      case 5:
        section(5, capMemories(r, opts.memoryMaxPages));
        break;
      case 6:
        if (meter) {
          section(6, appendEntries(r, 1, newGlobalEntry));
          globalDone = true;
        } else section(6, r.take(s.end - s.contentStart));
        break;
      case 7:
        if (meter) {
          section(7, appendEntries(r, newExports, exportEntries));
          exportDone = true;
        } else section(7, r.take(s.end - s.contentStart));
        break;
      case 8:
        if (!startExport.length) out.bytes(bytes.subarray(s.start, s.end));
        break;
      case 10:
        section(10, meter ? meterCode(r, fuelGlobal) : r.take(s.end - s.contentStart));
        break;
      default:
        out.bytes(bytes.subarray(s.start, s.end));
    }
  }
  if (!globalDone) section(6, Uint8Array.from([1, ...newGlobalEntry]));
  if (!exportDone) section(7, Uint8Array.from([newExports, ...exportEntries]));
  return out.result();
}

function appendEntries(r: Reader, added: number, entry: number[]): Uint8Array {
  const count = r.u32();
  const w = new Writer();
  w.u32(count + added);
  w.bytes(r.take(r.end - r.pos));
  w.bytes(entry);
  return w.result();
}

function writeCappedLimits(w: Writer, min: number, max: number | undefined, cap: number): void {
  w.bytes([0x01]);
  w.u32(min);
  w.u32(Math.max(min, Math.min(max ?? cap, cap)));
}

function capMemories(r: Reader, capPages: number): Uint8Array {
  const w = new Writer();
  const n = r.u32();
  w.u32(n);
  for (let i = 0; i < n; i++) {
    const at = r.pos;
    const l = readLimits(r);
    if (l.shared || l.memory64) {
      throw new WasmFormatError("shared and 64-bit memories are not supported", at);
    }
    writeCappedLimits(w, l.min, l.max, capPages);
  }
  return w.result();
}

function capTables(r: Reader, capEntries: number): Uint8Array {
  const w = new Writer();
  const n = r.u32();
  w.u32(n);
  for (let i = 0; i < n; i++) {
    const typeAt = r.pos;
    readValType(r);
    w.bytes(r.bytes.subarray(typeAt, r.pos));
    const l = readLimits(r);
    writeCappedLimits(w, l.min, l.max, capEntries);
  }
  return w.result();
}

/** The charge sequence: fuel -= cost; if (fuel < 0) unreachable. */
function charge(w: Writer, g: number[], cost: number): void {
  w.bytes([0x23, ...g, 0x42, ...encodeS64(BigInt(cost)), 0x7d, 0x24, ...g]);
  w.bytes([0x23, ...g, 0x42, 0x00, 0x53, 0x04, 0x40, 0x00, 0x0b]);
}

interface Segment {
  pos: number;
  cost: number;
}

function meterCode(r: Reader, fuelGlobal: number): Uint8Array {
  const g = encodeU32(fuelGlobal);
  const w = new Writer();
  w.ensure((r.end - r.pos) * 2);
  const count = r.u32();
  w.u32(count);
  const body = new Writer();
  for (let f = 0; f < count; f++) {
    const size = r.u32();
    const start = r.pos;
    const end = start + size;
    r.need(size);
    const br = new Reader(r.bytes, start, end);
    for (let n = br.u32(); n > 0; n--) {
      br.u32();
      readValType(br);
    }
    const inserts: Segment[] = [];
    const segments: Segment[] = [{ pos: br.pos, cost: 0 }];
    const loops: boolean[] = [];
    let closed = false;
    while (br.pos < end) {
      const op = skipInstruction(br);
      segments[segments.length - 1].cost++;
      if (op === OP.loop) {
        loops.push(true);
        segments.push({ pos: br.pos, cost: 0 });
      } else if (op === OP.block || op === OP.if || op === OP.try || op === OP.tryTable) {
        loops.push(false);
      } else if (op === OP.end) {
        if (loops.length === 0) {
          inserts.push(segments.pop()!);
          closed = true;
          break;
        }
        if (loops.pop()) inserts.push(segments.pop()!);
      }
    }
    if (!closed || br.pos !== end) {
      throw new WasmFormatError(`function body ${f} is not terminated by end`, br.pos);
    }
    inserts.sort((a, b) => a.pos - b.pos);
    body.len = 0;
    let copied = start;
    for (const s of inserts) {
      body.bytes(r.bytes.subarray(copied, s.pos));
      charge(body, g, s.cost);
      copied = s.pos;
    }
    body.bytes(r.bytes.subarray(copied, end));
    w.u32(body.len);
    w.bytes(body.buf.subarray(0, body.len));
    r.pos = end;
  }
  return w.result();
}
