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
import { OP } from "./ops.ts";
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
    const buf = this.buf;
    const len = this.len;
    // A byte loop allocates nothing; a subarray for set() is a heap object per span, and
    // thousands of them per module cost a scavenge every few loads.
    if (n > 1024) buf.set(src.subarray(from, to), len);
    else for (let i = 0; i < n; i++) buf[len + i] = src[from + i];
    this.len = len + n;
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

/**
 * Writes one section's content into `out`; false drops the section. `r` is null
 * when the section is absent.
 */
type Edit = (r: Reader | null, out: Writer) => boolean;

/** Output buffer reused between calls (instrumenting is synchronous), so a load allocates once. */
let scratch: Writer | null = null;
/** A scratch buffer grown past this is not kept after the call. */
const SCRATCH_KEEP_BYTES = 4 << 20;

/** Number of bytes of the unsigned LEB128 of `v`. */
function lebLength(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/**
 * Calls `write` to append a byte run to `out` preceded by its u32 LEB128 length:
 * 5 bytes are reserved up front and the run is moved back when its length needs fewer.
 * Returns false (and writes nothing) when `write` does.
 */
function sized(out: Writer, write: () => boolean): boolean {
  out.ensure(5);
  const slot = out.len;
  out.len += 5;
  const start = out.len;
  if (!write()) {
    out.len = slot;
    return false;
  }
  const size = out.len - start;
  const n = lebLength(size);
  if (n < 5) {
    out.buf.copyWithin(slot + n, start, out.len);
    out.len -= 5 - n;
  }
  let x = size;
  for (let i = 0; i < n; i++) {
    out.buf[slot + i] = (x & 0x7f) | (i < n - 1 ? 0x80 : 0);
    x = Math.floor(x / 128);
  }
  return true;
}

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
  const meter = opts.meter ?? true;
  const edits = new Map<number, Edit>();
  edits.set(4, (r, out) => r !== null && capTables(r, out, opts.tableMaxEntries));
  edits.set(5, (r, out) => r !== null && capMemories(r, out, opts.memoryMaxPages));

  if (meter) {
    const g = info.importedGlobalCount + info.definedGlobalCount;
    const tSet = info.types.length;
    const fSet = info.functionTypes.length;
    const gb = encodeU32(g);
    edits.set(1, (r, out) => appendEntries(r, out, 2, [0x60, 1, 0x7c, 0, 0x60, 0, 1, 0x7c]));
    edits.set(
      3,
      (r, out) => appendEntries(r, out, 2, [...encodeU32(tSet), ...encodeU32(tSet + 1)]),
    );
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
    const setBody = [0x00, 0x20, 0x00, 0xb0, 0x24, ...gb, OP.end];
    const getBody = [0x00, 0x23, ...gb, 0xb9, OP.end];
    const helpers = [
      ...encodeU32(setBody.length),
      ...setBody,
      ...encodeU32(getBody.length),
      ...getBody,
    ];
    edits.set(10, (r, out) => meterCode(r, out, info, g, helpers));
  }

  const out = scratch ?? new Writer();
  scratch = null;
  out.len = 0;
  out.ensure(bytes.length + (bytes.length >> 1) + 256);
  out.copy(bytes, 0, 8);
  const emit = (id: number, edit: Edit, r: Reader | null) => {
    out.byte(id);
    if (!sized(out, () => edit(r, out))) out.len--;
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
  flushBefore(ORDER.length);
  return out;
}

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

function writeCappedLimits(w: Writer, min: number, max: number | undefined, cap: number): void {
  w.byte(0x01);
  w.u32(min);
  w.u32(Math.max(min, Math.min(max ?? cap, cap)));
}

function capMemories(r: Reader, w: Writer, capPages: number): boolean {
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
  return true;
}

function capTables(r: Reader, w: Writer, capEntries: number): boolean {
  const n = r.u32();
  w.u32(n);
  for (let i = 0; i < n; i++) {
    const typeAt = r.pos;
    readValType(r);
    w.copy(r.bytes, typeAt, r.pos);
    const l = readLimits(r);
    writeCappedLimits(w, l.min, l.max, capEntries);
  }
  return true;
}

/** Kinds of immediates after a one-byte opcode (Core spec 5.4); 0 marks an opcode handled apart. */
const K_NONE = 1;
const K_U32 = 2;
const K_U32X2 = 3;
const K_MEMARG = 4;
const K_S32 = 5;
const K_S64 = 6;
const K_B4 = 7;
const K_B8 = 8;
const IMM = new Uint8Array(256);
for (const op of [0x00, 0x01, 0x05, 0x0a, 0x0f, 0x1a, 0x1b, 0xd1, 0xd3, 0xd4]) IMM[op] = K_NONE;
for (let op = 0x45; op <= 0xc4; op++) IMM[op] = K_NONE;
// throw, rethrow, br, br_if, return_call, return_call_ref, local/global/table get/set/tee,
// memory.size, memory.grow, ref.func, br_on_null, br_on_non_null
for (const op of [0x08, 0x09, 0x0c, 0x0d, 0x12, 0x15, 0xd2, 0xd5, 0xd6, 0x3f, 0x40]) {
  IMM[op] = K_U32;
}
for (let op = 0x20; op <= 0x26; op++) IMM[op] = K_U32;
IMM[0x13] = K_U32X2; // return_call_indirect
for (let op = 0x28; op <= 0x3e; op++) IMM[op] = K_MEMARG;
IMM[0x41] = K_S32;
IMM[0x42] = K_S64;
IMM[0x43] = K_B4;
IMM[0x44] = K_B8;

/** Value types a typed `select` may name (the ones {@link readValType} accepts). */
const SIMPLE_VALTYPE = new Uint8Array(256);
for (const t of [0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f]) SIMPLE_VALTYPE[t] = 1;

/** Position after the last LEB128 read by {@link leb}. */
let lebEnd = 0;

/**
 * Reads an unsigned LEB128 of at most `max` bytes at `p` and returns its value
 * (exact below 2^53; only small values are used). {@link lebEnd} gets the
 * position after it.
 */
function leb(b: Uint8Array, p: number, end: number, max: number): number {
  let v = 0;
  let scale = 1;
  for (let i = 0; i < max; i++) {
    if (p >= end) throw new WasmFormatError("unexpected end inside an instruction", p);
    const x = b[p++];
    v += (x & 0x7f) * scale;
    if (x < 0x80) {
      lebEnd = p;
      return v;
    }
    scale *= 128;
  }
  throw new WasmFormatError(`LEB128 longer than ${max} bytes`, p);
}

/** Skips a LEB128 of at most `max` bytes at `p`; returns the position after it. */
function skipLeb(b: Uint8Array, p: number, end: number, max: number): number {
  for (let i = 0; i < max; i++) {
    if (p >= end) throw new WasmFormatError("unexpected end inside an instruction", p);
    if (b[p++] < 0x80) return p;
  }
  throw new WasmFormatError(`LEB128 longer than ${max} bytes`, p);
}

/** Skips a block type (5.4.1): 0x40, a value type, a GC reference type, or an s33 type index. */
function skipBlockType(b: Uint8Array, p: number, end: number): number {
  if (p >= end) throw new WasmFormatError("unexpected end inside a block type", p);
  const t = b[p];
  if (t === 0x40 || (t >= 0x7b && t <= 0x7f) || t === 0x70 || t === 0x6f) return p + 1;
  if (t === 0x63 || t === 0x64) return skipLeb(b, p + 1, end, 5);
  return skipLeb(b, p, end, 5);
}

function skipMemarg(b: Uint8Array, p: number, end: number): number {
  const align = leb(b, p, end, 5);
  p = lebEnd;
  // Multi-memory: bit 6 of the alignment field announces an explicit memory index.
  if (align & 0x40) p = skipLeb(b, p, end, 5);
  return skipLeb(b, p, end, 10); // offset: u32, or u64 with memory64
}

/** Skips the rest of a 0xFC, 0xFD or 0xFE prefixed instruction (`p` after the prefix). */
function skipPrefixed(prefix: number, b: Uint8Array, p: number, end: number): number {
  const at = p;
  const sub = leb(b, p, end, 5);
  p = lebEnd;
  if (prefix === 0xfc) {
    if (sub <= 7) return p;
    if (sub === 8 || sub === 10 || sub === 12 || sub === 14) {
      return skipLeb(b, skipLeb(b, p, end, 5), end, 5);
    }
    if (sub === 9 || sub === 11 || sub === 13 || sub === 15 || sub === 16 || sub === 17) {
      return skipLeb(b, p, end, 5);
    }
    throw new WasmFormatError(`unknown 0xFC instruction ${sub}`, at);
  }
  if (prefix === 0xfd) {
    if (sub <= 11 || sub === 92 || sub === 93) return skipMemarg(b, p, end);
    if (sub === 12 || sub === 13) p += 16;
    else if (sub >= 21 && sub <= 34) p += 1;
    else if (sub >= 84 && sub <= 91) p = skipMemarg(b, p, end) + 1;
    else if (sub > 0x113) throw new WasmFormatError(`unknown SIMD instruction ${sub}`, at);
    if (p > end) throw new WasmFormatError("unexpected end inside an instruction", end);
    return p;
  }
  // 0xFE (threads): atomic.fence has one zero byte, everything else a memarg.
  if (sub === 0x03) {
    if (p >= end) throw new WasmFormatError("unexpected end inside an instruction", p);
    return p + 1;
  }
  return skipMemarg(b, p, end);
}

/** Appends a 5-byte signed LEB128 of `v` (0 <= v < 2^34): a slot of fixed width. */
function putPaddedSleb5(o: Uint8Array, at: number, v: number): void {
  o[at] = (v & 0x7f) | 0x80;
  o[at + 1] = ((v >>> 7) & 0x7f) | 0x80;
  o[at + 2] = ((v >>> 14) & 0x7f) | 0x80;
  o[at + 3] = ((v >>> 21) & 0x7f) | 0x80;
  o[at + 4] = Math.floor(v / 2 ** 28) & 0x3f;
}

/** An unsigned LEB128 padded to `width` bytes (valid: 5.2.2 allows up to 5). */
function paddedU32(v: number, width: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < width; i++) {
    const last = i === width - 1;
    out.push((v & 0x7f) | (last ? 0 : 0x80));
    v = Math.floor(v / 128);
  }
  return out;
}

/** Byte sequences of one fuel local (index known per function) and the module's fuel global. */
interface Snippets {
  /**
   * Charge: [global|local].get; i64.const COST(5-byte slot); i64.sub; local.tee;
   * global.set; local.get; i64.const 0; i64.lt_s; if; unreachable; end.
   * The first instruction is `local.get`, padded to the width of `global.get`.
   */
  charge: Uint8Array;
  /** `global.get`, the same width as the charge's first instruction. */
  reloadHead: Uint8Array;
  /** Offset of the cost slot inside `charge`. */
  costAt: number;
  /** local = global */
  load: Uint8Array;
}

/** Snippets per fuel-local index, for one module (the global index is fixed per module). */
type SnippetCache = Map<number, Snippets>;

function snippets(cache: SnippetCache, local: number, g: number): Snippets {
  let s = cache.get(local);
  if (!s) {
    const lb = encodeU32(local);
    const gb = encodeU32(g);
    const width = Math.max(lb.length, gb.length);
    const head = [0x20, ...paddedU32(local, width)];
    const charge = [
      ...head,
      0x42,
      0,
      0,
      0,
      0,
      0, // i64.const cost (patched)
      0x7d, // i64.sub
      0x22,
      ...lb, // local.tee
      0x24,
      ...gb, // global.set
      0x20,
      ...lb, // local.get
      0x42,
      0x00, // i64.const 0
      0x53, // i64.lt_s
      0x04,
      0x40, // if
      0x00, // unreachable
      0x0b, // end
    ];
    s = {
      charge: Uint8Array.from(charge),
      reloadHead: Uint8Array.from([0x23, ...paddedU32(g, width)]),
      costAt: head.length + 1,
      load: Uint8Array.from([0x23, ...gb, 0x21, ...lb]),
    };
    cache.set(local, s);
  }
  return s;
}

/**
 * Rewrites every function body. Fuel lives in a new i64 local while the
 * function runs (a register, not memory); every charge also writes it to the
 * global, so the global is always the fuel left as of the last charge (exact
 * for the host after any trap) and nothing has to be written back on the way
 * out of a function:
 * entry: local = global - cost; global = local; trap if negative
 * loop top: local -= cost; global = local; trap if negative
 * after a call, and where a caught exception lands: local = global
 */
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
    // The body's size goes first: reserve 5 bytes, move the body back if it needs fewer.
    w.ensure(5);
    const slot = w.len;
    w.len += 5;
    meterFunction(r.bytes, start, start + size, params, g, w, f, cache);
    const bodySize = w.len - slot - 5;
    const n = lebLength(bodySize);
    if (n < 5) {
      w.buf.copyWithin(slot + n, slot + 5, w.len);
      w.len -= 5 - n;
    }
    for (let i = 0, x = bodySize; i < n; i++, x = Math.floor(x / 128)) {
      w.buf[slot + i] = (x & 0x7f) | (i < n - 1 ? 0x80 : 0);
    }
    r.pos += size;
  }
  w.bytes(helpers);
  return true;
}

/** The snippets of the previous function (most functions of a module share a fuel-local index). */
let lastLocals = -1;
let lastCache: SnippetCache | null = null;
let lastSnippets: Snippets | null = null;

/** V8's limit on locals per function (kV8MaxWasmFunctionLocals). */
const MAX_LOCALS = 50_000;

/** Open blocks of the function being metered (reused between functions). */
const FRAME_LOOP = 1;
/** A caught exception lands after this block's `end`: reload the local there. */
const FRAME_RELOAD = 2;
let frameFlags = new Int32Array(64);
/** For a loop: where its charge starts in the output. */
let frameOut = new Int32Array(64);
/** For a loop: the cost slot of the enclosing region in the output. */
let frameSlot = new Int32Array(64);
/** For a loop: the enclosing region's cost so far. */
let frameCost = new Float64Array(64);

/** A copy of `a` with room for `n` elements. */
function grown<T extends Int32Array | Float64Array>(a: T, n: number): T {
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a);
  return b;
}

function growFrames(): void {
  const n = frameFlags.length * 2;
  frameFlags = grown(frameFlags, n);
  frameOut = grown(frameOut, n);
  frameSlot = grown(frameSlot, n);
  frameCost = grown(frameCost, n);
}

/**
 * Meters one function body bytes[start, end) into `out`, in one pass: the
 * original bytes are copied in spans between insertion points, and a charge's
 * cost (known only when its region closes) is patched into a fixed-width slot.
 */
function meterFunction(
  src: Uint8Array,
  start: number,
  end: number,
  params: number,
  g: number,
  out: Writer,
  f: number,
  cache: SnippetCache,
): void {
  const declCount = leb(src, start, end, 5);
  const declStart = lebEnd;
  let p = declStart;
  let locals = params;
  for (let n = declCount; n > 0; n--) {
    locals += leb(src, p, end, 5);
    p = lebEnd;
    if (p >= end || !SIMPLE_VALTYPE[src[p]]) {
      throw new WasmFormatError(`unsupported local type in function body ${f}`, p);
    }
    p++;
    if (locals > MAX_LOCALS) {
      throw new WasmFormatError(
        `function body ${f} declares more than ${MAX_LOCALS} locals`,
        start,
      );
    }
  }
  const declEnd = p;
  const s = locals === lastLocals && cache === lastCache
    ? lastSnippets!
    : snippets(cache, locals, g);
  lastLocals = locals;
  lastCache = cache;
  lastSnippets = s;
  const { charge, reloadHead, costAt, load } = s;
  const chargeLen = charge.length;
  const loadLen = load.length;

  out.u32(declCount + 1);
  out.copy(src, declStart, declEnd);
  out.byte(0x01); // one more local: the fuel counter, an i64
  out.byte(0x7e);
  // Entry charge: its first instruction reads the global.
  out.ensure(chargeLen);
  const entryAt = out.len;
  out.buf.set(charge, out.len);
  out.len += chargeLen;
  out.buf.set(reloadHead, entryAt);

  let copied = declEnd;
  let cost = 0;
  let depth = 0;
  /** Output position of the charge slot of the innermost open loop, or the entry charge. */
  let slotAt = entryAt + costAt;
  while (true) {
    if (p >= end) throw new WasmFormatError(`function body ${f} is not terminated by end`, p);
    const at = p;
    const op = src[p++];
    cost++;
    const kind = IMM[op];
    if (kind === K_NONE) continue;
    if (kind !== 0) {
      if (kind === K_U32) p = skipLeb(src, p, end, 5);
      else if (kind === K_MEMARG) p = skipMemarg(src, p, end);
      else if (kind === K_S32) p = skipLeb(src, p, end, 5);
      else if (kind === K_S64) p = skipLeb(src, p, end, 10);
      else if (kind === K_B4) p += 4;
      else if (kind === K_B8) p += 8;
      else p = skipLeb(src, skipLeb(src, p, end, 5), end, 5); // K_U32X2
      continue;
    }
    // Opcodes that open or close blocks, call, catch, or have irregular immediates.
    let reloadAfter = false;
    switch (op) {
      case 0x03: {
        // loop: a charge at the top of its body, the target of every back-edge.
        p = skipBlockType(src, p, end);
        if (depth === frameFlags.length) growFrames();
        frameFlags[depth] = FRAME_LOOP;
        frameCost[depth] = cost;
        out.copy(src, copied, p);
        copied = p;
        out.ensure(chargeLen);
        frameOut[depth] = out.len;
        frameSlot[depth] = slotAt; // the enclosing region's slot, restored at this loop's end
        slotAt = out.len + costAt;
        out.buf.set(charge, out.len);
        out.len += chargeLen;
        depth++;
        cost = 0;
        continue;
      }
      case 0x02: // block
      case 0x04: // if
      case 0x06: // try (legacy exception handling)
        p = skipBlockType(src, p, end);
        if (depth === frameFlags.length) growFrames();
        frameFlags[depth++] = 0;
        continue;
      case 0x1f: {
        // try_table: each catch clause branches to a label when an exception lands.
        p = skipBlockType(src, p, end);
        let n = leb(src, p, end, 5);
        p = lebEnd;
        let own = 0;
        for (; n > 0; n--) {
          if (p >= end) throw new WasmFormatError("unexpected end inside try_table", p);
          const k = src[p++];
          if (k > 3) throw new WasmFormatError(`unknown catch kind ${k}`, p - 1);
          if (k <= 1) p = skipLeb(src, p, end, 5); // tag
          const label = leb(src, p, end, 5);
          p = lebEnd;
          // The label is relative to the blocks around the try_table (label 0: the
          // innermost one). Marking the try_table's own block too, as if it counted,
          // costs nothing where no exception lands, so either reading is safe.
          markLanding(depth - 1 - label, out, reloadHead);
          if (label === 0) own = FRAME_RELOAD;
          else markLanding(depth - label, out, reloadHead);
        }
        if (depth === frameFlags.length) growFrames();
        frameFlags[depth++] = own;
        continue;
      }
      case 0x0b: // end
      case 0x18: {
        // delegate (legacy exception handling) closes its try like an end
        if (op === 0x18) p = skipLeb(src, p, end, 5);
        if (depth === 0) {
          if (op === 0x18) throw new WasmFormatError("delegate outside a try", at);
          out.copy(src, copied, p);
          if (p !== end) {
            throw new WasmFormatError(`function body ${f} continues after its final end`, p);
          }
          putPaddedSleb5(out.buf, slotAt, cost);
          return;
        }
        const flags = frameFlags[--depth];
        if (flags & FRAME_LOOP) {
          putPaddedSleb5(out.buf, slotAt, cost);
          slotAt = frameSlot[depth];
          cost = frameCost[depth];
        }
        if (flags & FRAME_RELOAD) reloadAfter = true;
        break;
      }
      case 0x0e: {
        // br_table: a vector of labels and a default
        let n = leb(src, p, end, 5);
        p = lebEnd;
        for (; n >= 0; n--) p = skipLeb(src, p, end, 5);
        continue;
      }
      case 0x10: // call
      case 0x14: // call_ref
        p = skipLeb(src, p, end, 5);
        reloadAfter = true;
        break;
      case 0x11: // call_indirect
        p = skipLeb(src, skipLeb(src, p, end, 5), end, 5);
        reloadAfter = true;
        break;
      case 0x07: // catch tag (legacy): an exception thrown by a callee lands here
        p = skipLeb(src, p, end, 5);
        reloadAfter = true;
        break;
      case 0x19: // catch_all (legacy)
        reloadAfter = true;
        break;
      case 0x1c: {
        // select with types
        let n = leb(src, p, end, 5);
        p = lebEnd;
        for (; n > 0; n--) {
          if (p >= end || !SIMPLE_VALTYPE[src[p]]) {
            throw new WasmFormatError("unsupported value type in select", p);
          }
          p++;
        }
        continue;
      }
      case 0xd0: {
        // ref.null heap type
        if (p >= end) throw new WasmFormatError("unexpected end inside ref.null", p);
        const t = src[p];
        p = t === 0x70 || t === 0x6f ? p + 1 : skipLeb(src, p, end, 5);
        continue;
      }
      case 0xfc:
      case 0xfd:
      case 0xfe:
        p = skipPrefixed(op, src, p, end);
        continue;
      case 0xfb:
        throw new WasmFormatError("GC instructions (0xFB prefix) are not supported", at);
      default:
        throw new WasmFormatError(`unknown opcode 0x${op.toString(16)}`, at);
    }
    if (reloadAfter) {
      if (p > end) throw new WasmFormatError("unexpected end inside an instruction", end);
      out.copy(src, copied, p);
      copied = p;
      out.ensure(loadLen);
      out.buf.set(load, out.len);
      out.len += loadLen;
    }
  }
}

/**
 * A caught exception lands where the block `frame` continues: after its end, or
 * at its top for a loop (whose charge then reads the global instead of the local).
 * Frames outside the function (-1: the function itself) need nothing: the
 * exception leaves the function.
 */
function markLanding(frame: number, out: Writer, reloadHead: Uint8Array): void {
  if (frame < 0) return;
  if (frameFlags[frame] & FRAME_LOOP) {
    out.buf.set(reloadHead, frameOut[frame]);
  } else {
    frameFlags[frame] |= FRAME_RELOAD;
  }
}
