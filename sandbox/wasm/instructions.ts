/**
 * The one instruction decoder (WebAssembly Core Specification 2.0, section
 * 5.4 "Instructions", plus the sign-extension, non-trapping float-to-int, bulk
 * memory, reference types, SIMD (5.4.8), tail call, exception handling and
 * threads proposals that clang, Rust, TinyGo and AssemblyScript emit; GC
 * (0xFB) instructions are refused). It finds where each instruction's
 * immediates end, over raw bytes and positions so the rewriter's hot loop
 * allocates nothing; the few immediates a caller needs (block types, catch
 * labels, a prefixed instruction's sub-opcode) are left in module state.
 *
 * @module
 */

import { type Reader, WasmFormatError } from "./reader.ts";

/** Opcodes the rewriter and the parser name (5.4). */
export const OP = {
  unreachable: 0x00,
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  else: 0x05,
  try: 0x06,
  catch: 0x07,
  end: 0x0b,
  brTable: 0x0e,
  call: 0x10,
  callIndirect: 0x11,
  callRef: 0x14,
  delegate: 0x18,
  catchAll: 0x19,
  selectT: 0x1c,
  tryTable: 0x1f,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  globalGet: 0x23,
  globalSet: 0x24,
  refNull: 0xd0,
  prefixGc: 0xfb,
  prefixFc: 0xfc,
  prefixSimd: 0xfd,
  prefixThreads: 0xfe,
} as const;

/** Sub-opcodes of the 0xFC prefix whose cost grows with an operand (5.4.6, 5.4.7). */
export const FC = {
  memoryInit: 8,
  memoryCopy: 10,
  memoryFill: 11,
  tableInit: 12,
  tableCopy: 14,
  tableFill: 17,
} as const;

/**
 * Kinds of immediates after a one-byte opcode, indexed by opcode. {@link K_NONE}
 * and the fixed kinds cover the common instructions; 0 marks an opcode with
 * irregular immediates (blocks, branches tables, calls, prefixes…) that
 * {@link skipImmediates} decodes, or an unknown one.
 */
export const IMM = new Uint8Array(256);
/** No immediates. */
export const K_NONE = 1;
/** One u32 (a index: local, global, label, function, table…). */
export const K_U32 = 2;
/** Two u32s. */
export const K_U32X2 = 3;
/** A memory argument. */
export const K_MEMARG = 4;
/** An s32 constant. */
export const K_S32 = 5;
/** An s64 constant. */
export const K_S64 = 6;
/** Four bytes (f32.const). */
export const K_B4 = 7;
/** Eight bytes (f64.const). */
export const K_B8 = 8;
// unreachable, nop, else, (0x0a), return, drop, select, ref.is_null, ref.eq, ref.as_non_null
for (const op of [0x00, 0x01, 0x05, 0x0a, 0x0f, 0x1a, 0x1b, 0xd1, 0xd3, 0xd4]) IMM[op] = K_NONE;
// numeric instructions
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

/** Value types a typed `select` or a local declaration may name (the ones the parser accepts). */
export const SIMPLE_VALTYPE = new Uint8Array(256);
for (const t of [0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f]) SIMPLE_VALTYPE[t] = 1;

/** Position after the last LEB128 read by {@link leb}. */
export let lebEnd = 0;
/** Sub-opcode of the last prefixed instruction {@link skipImmediates} decoded. */
export let prefixedSub = 0;
/** Labels of the last `try_table`'s catch clauses (5.4.1), `catchCount` of them. */
export let catchLabels = new Int32Array(8);
/** Number of entries of {@link catchLabels} the last `try_table` filled. */
export let catchCount = 0;

const truncated = (p: number) => new WasmFormatError("unexpected end inside an instruction", p);

/**
 * Reads an unsigned LEB128 of at most `max` bytes at `p` and returns its value
 * (exact below 2^53; only small values are used). {@link lebEnd} gets the
 * position after it.
 */
export function leb(b: Uint8Array, p: number, end: number, max: number): number {
  let v = 0;
  let scale = 1;
  for (let i = 0; i < max; i++) {
    if (p >= end) throw truncated(p);
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
export function skipLeb(b: Uint8Array, p: number, end: number, max: number): number {
  for (let i = 0; i < max; i++) {
    if (p >= end) throw truncated(p);
    if (b[p++] < 0x80) return p;
  }
  throw new WasmFormatError(`LEB128 longer than ${max} bytes`, p);
}

/** Skips a block type (5.4.1): 0x40, a value type, a GC reference type, or an s33 type index. */
export function skipBlockType(b: Uint8Array, p: number, end: number): number {
  if (p >= end) throw new WasmFormatError("unexpected end inside a block type", p);
  const t = b[p];
  if (t === 0x40 || (t >= 0x7b && t <= 0x7f) || t === 0x70 || t === 0x6f) return p + 1;
  if (t === 0x63 || t === 0x64) return skipLeb(b, p + 1, end, 5);
  return skipLeb(b, p, end, 5);
}

/** Skips a memory argument (5.4.6); returns the position after it. */
export function skipMemarg(b: Uint8Array, p: number, end: number): number {
  const align = leb(b, p, end, 5);
  p = lebEnd;
  // Multi-memory: bit 6 of the alignment field announces an explicit memory index.
  if (align & 0x40) p = skipLeb(b, p, end, 5);
  return skipLeb(b, p, end, 10); // offset: u32, or u64 with memory64
}

/**
 * Skips the rest of a 0xFC, 0xFD or 0xFE prefixed instruction (`p` after the
 * prefix); {@link prefixedSub} gets its sub-opcode.
 */
function skipPrefixed(prefix: number, b: Uint8Array, p: number, end: number): number {
  const at = p;
  const sub = leb(b, p, end, 5);
  prefixedSub = sub;
  p = lebEnd;
  if (prefix === OP.prefixFc) {
    if (sub <= 7) return p; // saturating truncations
    // memory.init, memory.copy, table.init, table.copy: two indices
    if (sub === 8 || sub === 10 || sub === 12 || sub === 14) {
      return skipLeb(b, skipLeb(b, p, end, 5), end, 5);
    }
    // data.drop, memory.fill, elem.drop, table.grow, table.size, table.fill: one index
    if (sub === 9 || sub === 11 || sub === 13 || sub === 15 || sub === 16 || sub === 17) {
      return skipLeb(b, p, end, 5);
    }
    throw new WasmFormatError(`unknown 0xFC instruction ${sub}`, at);
  }
  if (prefix === OP.prefixSimd) {
    if (sub <= 11 || sub === 92 || sub === 93) return skipMemarg(b, p, end);
    if (sub === 12 || sub === 13) p += 16; // v128.const, i8x16.shuffle
    else if (sub >= 21 && sub <= 34) p += 1; // lane index
    else if (sub >= 84 && sub <= 91) p = skipMemarg(b, p, end) + 1; // load/store lane
    else if (sub > 0x113) throw new WasmFormatError(`unknown SIMD instruction ${sub}`, at);
    if (p > end) throw truncated(end);
    return p;
  }
  // 0xFE (threads): atomic.fence has one zero byte, everything else a memarg.
  if (sub === 0x03) {
    if (p >= end) throw truncated(p);
    return p + 1;
  }
  return skipMemarg(b, p, end);
}

/**
 * Skips a `try_table`'s block type and catch clauses (`p` after the opcode);
 * {@link catchLabels} and {@link catchCount} get the clauses' labels.
 */
function skipTryTable(b: Uint8Array, p: number, end: number): number {
  p = skipBlockType(b, p, end);
  const n = leb(b, p, end, 5);
  p = lebEnd;
  if (n > catchLabels.length) catchLabels = new Int32Array(Math.max(n, catchLabels.length * 2));
  for (let i = 0; i < n; i++) {
    if (p >= end) throw new WasmFormatError("unexpected end inside try_table", p);
    const kind = b[p++];
    if (kind > 3) throw new WasmFormatError(`unknown catch kind ${kind}`, p - 1);
    if (kind <= 1) p = skipLeb(b, p, end, 5); // catch and catch_ref name a tag
    catchLabels[i] = leb(b, p, end, 5);
    p = lebEnd;
  }
  catchCount = n;
  return p;
}

/**
 * Skips immediates of a fixed kind (`kind` = {@link IMM}[op], not 0 or
 * {@link K_NONE}) at `p`; returns the position after them. The fast path of
 * {@link skipImmediates}, for callers that already looked the kind up.
 */
export function skipFixed(kind: number, b: Uint8Array, p: number, end: number): number {
  if (kind === K_U32 || kind === K_S32) return skipLeb(b, p, end, 5);
  if (kind === K_MEMARG) return skipMemarg(b, p, end);
  if (kind === K_S64) return skipLeb(b, p, end, 10);
  if (kind === K_U32X2) return skipLeb(b, skipLeb(b, p, end, 5), end, 5);
  const q = p + (kind === K_B4 ? 4 : 8);
  if (q > end) throw truncated(end);
  return q;
}

/**
 * Skips the immediates of the instruction whose opcode `op` was read just
 * before `p`, and returns the position after them. Any instruction: the fixed
 * kinds of {@link IMM} and the irregular ones.
 * @throws {WasmFormatError} for an unknown opcode or truncated immediates.
 */
export function skipImmediates(op: number, b: Uint8Array, p: number, end: number): number {
  const kind = IMM[op];
  if (kind === K_NONE) return p;
  if (kind !== 0) return skipFixed(kind, b, p, end);
  switch (op) {
    case OP.block:
    case OP.loop:
    case OP.if:
    case OP.try:
      return skipBlockType(b, p, end);
    case OP.end:
    case OP.catchAll:
      return p;
    case OP.catch:
    case OP.delegate:
    case OP.call:
    case OP.callRef:
      return skipLeb(b, p, end, 5);
    case OP.callIndirect:
      return skipLeb(b, skipLeb(b, p, end, 5), end, 5);
    case OP.brTable: {
      // a vector of labels and a default
      let n = leb(b, p, end, 5);
      p = lebEnd;
      for (; n >= 0; n--) p = skipLeb(b, p, end, 5);
      return p;
    }
    case OP.tryTable:
      return skipTryTable(b, p, end);
    case OP.selectT: {
      let n = leb(b, p, end, 5);
      p = lebEnd;
      for (; n > 0; n--) {
        if (p >= end || !SIMPLE_VALTYPE[b[p]]) {
          throw new WasmFormatError("unsupported value type in select", p);
        }
        p++;
      }
      return p;
    }
    case OP.refNull: {
      // a heap type: funcref, externref, or a type index
      if (p >= end) throw new WasmFormatError("unexpected end inside ref.null", p);
      const t = b[p];
      return t === 0x70 || t === 0x6f ? p + 1 : skipLeb(b, p, end, 5);
    }
    case OP.prefixFc:
    case OP.prefixSimd:
    case OP.prefixThreads:
      return skipPrefixed(op, b, p, end);
    case OP.prefixGc:
      throw new WasmFormatError("GC instructions (0xFB prefix) are not supported", p - 1);
  }
  throw new WasmFormatError(`unknown opcode 0x${op.toString(16)}`, p - 1);
}

/** Skips a constant expression up to and including its `end` (5.4.9). */
export function skipConstExpr(r: Reader): void {
  const b = r.bytes;
  let p = r.pos;
  for (let i = 0; i < 1 << 16; i++) {
    if (p >= r.end) throw truncated(p);
    const op = b[p++];
    p = skipImmediates(op, b, p, r.end);
    if (op === OP.end) {
      r.pos = p;
      return;
    }
  }
  throw new WasmFormatError("constant expression too long", p);
}
