/**
 * The load-time rewriter: adds a fuel counter to a module and caps its memory
 * and tables, so V8 enforces the manifest's quotas inside the module itself.
 *
 * Fuel (the idea of Wasmtime's fuel, done by rewriting): one new mutable i64
 * global, set and read by the host through two added exports
 * ({@link FUEL_SET_EXPORT}, {@link FUEL_GET_EXPORT}). A charge is inserted at
 * every function entry and at the top of every `loop` body (the target of its
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

import { encodeName, encodeU32, Reader, WasmFormatError } from "./reader.ts";
import { OP, skipInstruction } from "./ops.ts";
import { type ModuleInfo, readLimits, readValType } from "./parse.ts";

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
    const n = b.length;
    this.ensure(n);
    if (n > 32) this.buf.set(b, this.len);
    else for (let i = 0; i < n; i++) this.buf[this.len + i] = b[i];
    this.len += n;
  }
  /** Copies src[from, to). */
  copy(src: Uint8Array, from: number, to: number): void {
    const n = to - from;
    this.ensure(n);
    if (n > 64) this.buf.set(src.subarray(from, to), this.len);
    else for (let i = 0; i < n; i++) this.buf[this.len + i] = src[from + i];
    this.len += n;
  }
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.len++] = b;
  }
  u32(v: number): void {
    this.ensure(5);
    let x = v >>> 0;
    do {
      let b = x & 0x7f;
      x >>>= 7;
      if (x !== 0) b |= 0x80;
      this.buf[this.len++] = b;
    } while (x !== 0);
  }
  /** Signed LEB128 of a non-negative safe integer (an s64 immediate). */
  sleb(v: number): void {
    this.ensure(10);
    let x = v;
    while (true) {
      const b = x % 128;
      x = Math.floor(x / 128);
      if (x === 0 && (b & 0x40) === 0) {
        this.buf[this.len++] = b;
        return;
      }
      this.buf[this.len++] = b | 0x80;
    }
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Order in which sections must appear (5.5.2, with tag 13 and data count 12). */
const ORDER = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];
const orderOf = (id: number) => ORDER.indexOf(id);

/** Rewrites one section's content; null drops the section. `r` is null when the section is absent. */
type Edit = (r: Reader | null) => Uint8Array | null;

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
  const edits = new Map<number, Edit>();
  edits.set(4, (r) => r && capTables(r, opts.tableMaxEntries));
  edits.set(5, (r) => r && capMemories(r, opts.memoryMaxPages));

  if (meter) {
    const g = info.importedGlobalCount + info.definedGlobalCount;
    const tSet = info.types.length;
    const fSet = info.functionTypes.length;
    const gb = encodeU32(g);
    edits.set(1, (r) => appendEntries(r, 2, [0x60, 1, 0x7c, 0, 0x60, 0, 1, 0x7c]));
    edits.set(3, (r) => appendEntries(r, 2, [...encodeU32(tSet), ...encodeU32(tSet + 1)]));
    // mut i64 = i64.const 0
    edits.set(6, (r) => appendEntries(r, 1, [0x7e, 0x01, 0x42, 0x00, OP.end]));
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
      edits.set(8, () => null);
    }
    edits.set(7, (r) => appendEntries(r, exportCount, exports));
    // set: global = i64.trunc_f64_s(param); get: f64.convert_i64_s(global)
    const setBody = [0x00, 0x20, 0x00, 0xb0, 0x24, ...gb, OP.end];
    const getBody = [0x00, 0x23, ...gb, 0xb9, OP.end];
    const helpers = [
      ...encodeU32(setBody.length),
      ...setBody,
      ...encodeU32(getBody.length),
      ...getBody,
    ];
    edits.set(10, (r) => meterCode(r, info, g, helpers));
  }

  const out = new Writer();
  out.ensure(bytes.length + (bytes.length >> 1) + 256);
  out.bytes(bytes.subarray(0, 8));
  const emit = (id: number, content: Uint8Array | null) => {
    if (content === null) return;
    out.bytes([id]);
    out.u32(content.length);
    out.bytes(content);
  };
  const flushBefore = (order: number) => {
    for (const [id, edit] of [...edits]) {
      if (orderOf(id) < order) {
        emit(id, edit(null));
        edits.delete(id);
      }
    }
  };
  for (const s of info.sections) {
    if (s.id !== 0) flushBefore(orderOf(s.id));
    const edit = edits.get(s.id);
    if (s.id !== 0 && edit) {
      emit(s.id, edit(new Reader(bytes, s.contentStart, s.end)));
      edits.delete(s.id);
    } else {
      out.bytes(bytes.subarray(s.start, s.end));
    }
  }
  flushBefore(ORDER.length);
  return out.result();
}

function appendEntries(r: Reader | null, added: number, entries: number[]): Uint8Array {
  const w = new Writer();
  if (r) {
    const count = r.u32();
    w.u32(count + added);
    w.bytes(r.take(r.end - r.pos));
  } else {
    w.u32(added);
  }
  w.bytes(entries);
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

/** Bytes to insert at `pos`: fixed ones, or a charge whose cost is known once its region is read. */
class Insert {
  constructor(
    readonly pos: number,
    readonly bytes: Uint8Array | null,
    readonly charge: { cost: number } | null,
    readonly prologue = false,
  ) {}
}

/**
 * Rewrites every function body. Fuel lives in a new i64 local while the
 * function runs (a register, not memory) and is synchronised with the global
 * around calls and on every way out, so callers and the host see it:
 * entry: local = global; charge
 * loop top: charge
 * before call/return/throw/branch out of the function/final end: global = local
 * after call: local = global
 * charge: local -= cost; if (local < 0) { global = local; unreachable }
 */
function meterCode(r: Reader | null, info: ModuleInfo, g: number, helpers: number[]): Uint8Array {
  const gb = encodeU32(g);
  const w = new Writer();
  if (!r) {
    w.u32(2);
    w.bytes(helpers);
    return w.result();
  }
  w.ensure((r.end - r.pos) * 2);
  const count = r.u32();
  w.u32(count + 2);
  const body = new Writer();
  const cache: SnippetCache = new Map();
  for (let f = 0; f < count; f++) {
    const size = r.u32();
    r.need(size);
    body.len = 0;
    meterFunction(
      r.bytes,
      r.pos,
      r.pos + size,
      info.functionTypes[info.importedFuncCount + f].params.length,
      gb,
      body,
      f,
      cache,
    );
    w.u32(body.len);
    w.bytes(body.buf.subarray(0, body.len));
    r.pos += size;
  }
  w.bytes(helpers);
  return w.result();
}

/** The byte sequences that move fuel between the local `local` and the global. */
interface Snippets {
  /** global = local */
  save: Uint8Array;
  /** local = global */
  load: Uint8Array;
  /** local.get, i64.const (the cost follows) */
  chargeHead: Uint8Array;
  /** i64.sub, local.tee, if (local < 0) { global = local; unreachable } */
  chargeTail: Uint8Array;
}

/** Snippets per fuel-local index, for one module (the global index is fixed per module). */
type SnippetCache = Map<number, Snippets>;

function snippets(cache: SnippetCache, local: number, gb: number[]): Snippets {
  let s = cache.get(local);
  if (!s) {
    const lb = encodeU32(local);
    const save = [0x20, ...lb, 0x24, ...gb];
    s = {
      save: Uint8Array.from(save),
      load: Uint8Array.from([0x23, ...gb, 0x21, ...lb]),
      chargeHead: Uint8Array.from([0x20, ...lb, 0x42]),
      chargeTail: Uint8Array.from([
        0x7d,
        0x22,
        ...lb,
        0x42,
        0x00,
        0x53,
        0x04,
        0x40,
        ...save,
        0x00,
        0x0b,
      ]),
    };
    cache.set(local, s);
  }
  return s;
}

/** Meters one function body bytes[start, end) into `body`. */
function meterFunction(
  bytes: Uint8Array,
  start: number,
  end: number,
  params: number,
  gb: number[],
  body: Writer,
  f: number,
  cache: SnippetCache,
): void {
  const br = new Reader(bytes, start, end);
  const declCount = br.u32();
  const declStart = br.pos;
  let locals = params;
  for (let n = declCount; n > 0; n--) {
    locals += br.u32();
    readValType(br);
  }
  const declEnd = br.pos;
  const { save, load, chargeHead, chargeTail } = snippets(cache, locals, gb);
  const inserts: Insert[] = [];
  const fnSeg = { cost: 0 };
  inserts.push(new Insert(declEnd, null, fnSeg, true));
  const segments = [fnSeg];
  const loops: boolean[] = [];
  let closed = false;
  while (br.pos < end) {
    const at = br.pos;
    const op = br.bytes[at];
    let targetsFunction = false;
    if (op === 0x0c || op === 0x0d) {
      br.pos++;
      targetsFunction = br.u32() === loops.length;
    } else if (op === 0x0e) {
      br.pos++;
      for (let n = br.u32() + 1; n > 0; n--) if (br.u32() === loops.length) targetsFunction = true;
    } else {
      skipInstruction(br);
    }
    segments[segments.length - 1].cost++;
    switch (op) {
      case OP.loop: {
        loops.push(true);
        const seg = { cost: 0 };
        segments.push(seg);
        inserts.push(new Insert(br.pos, null, seg));
        break;
      }
      case OP.block:
      case OP.if:
      case OP.try:
      case OP.tryTable:
        loops.push(false);
        break;
      case OP.end:
        if (loops.length === 0) {
          inserts.push(new Insert(at, save, null));
          closed = true;
        } else if (loops.pop()) segments.pop();
        break;
      case 0x10: // call
      case 0x11: // call_indirect
      case 0x14: // call_ref
        inserts.push(new Insert(at, save, null));
        inserts.push(new Insert(br.pos, load, null));
        break;
      case 0x08: // throw
      case 0x09: // rethrow
      case 0x0a: // throw_ref
      case 0x0f: // return
      case 0x12: // return_call
      case 0x13: // return_call_indirect
      case 0x15: // return_call_ref
        inserts.push(new Insert(at, save, null));
        break;
      default:
        if (targetsFunction) inserts.push(new Insert(at, save, null));
    }
    if (closed) break;
  }
  if (!closed || br.pos !== end) {
    throw new WasmFormatError(`function body ${f} is not terminated by end`, br.pos);
  }
  body.u32(declCount + 1);
  body.copy(bytes, declStart, declEnd);
  body.bytes([0x01, 0x7e]); // the fuel local
  let copied = declEnd;
  for (const ins of inserts) {
    body.copy(bytes, copied, ins.pos);
    copied = ins.pos;
    if (ins.prologue) body.bytes(load);
    if (ins.bytes) body.bytes(ins.bytes);
    if (ins.charge) {
      // local -= cost; if (local < 0) { global = local; unreachable }
      body.bytes(chargeHead);
      body.sleb(ins.charge.cost);
      body.bytes(chargeTail);
    }
  }
  body.copy(bytes, copied, end);
}
