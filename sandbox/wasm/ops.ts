/**
 * Skips one instruction's immediates (WebAssembly Core Specification 2.0,
 * section 5.4 "Instructions"), including the sign-extension, non-trapping
 * float-to-int, bulk memory, reference types, SIMD (5.4.8), tail call,
 * exception handling and threads proposals that clang, Rust, TinyGo and
 * AssemblyScript emit. GC (0xFB) instructions are refused.
 *
 * @module
 */

import { type Reader, WasmFormatError } from "./reader.ts";

/** Opcodes of structured instructions the rewriter must track (5.4.1). */
export const OP = {
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  else: 0x05,
  try: 0x06,
  end: 0x0b,
  tryTable: 0x1f,
} as const;

/** Reads a block type: 0x40, a value type, or an s33 type index (5.4.1). */
function skipBlockType(r: Reader): void {
  const b = r.bytes[r.pos];
  if (b === 0x40 || (b >= 0x7b && b <= 0x7f) || b === 0x70 || b === 0x6f) {
    r.pos++;
  } else if (b === 0x63 || b === 0x64) {
    r.pos++;
    r.skipSleb(5);
  } else {
    r.skipSleb(5);
  }
}

function skipMemarg(r: Reader): void {
  const align = r.u32();
  // Multi-memory: bit 6 of the alignment field announces an explicit memory index.
  if (align & 0x40) r.u32();
  r.skipSleb(10); // offset: u32, or u64 with memory64; both fit a 10-byte LEB
}

/**
 * Reads one instruction at `r.pos` and returns its opcode (for prefixed
 * instructions, `prefix << 16 | subop`). Immediates are skipped.
 */
export function skipInstruction(r: Reader): number {
  const at = r.pos;
  const op = r.byte();
  switch (op) {
    case 0x02:
    case 0x03:
    case 0x04:
    case 0x06:
      skipBlockType(r);
      return op;
    case 0x07: // catch tag
    case 0x08: // throw tag
    case 0x09: // rethrow label
    case 0x0c: // br
    case 0x0d: // br_if
    case 0x10: // call
    case 0x12: // return_call
    case 0x14: // call_ref
    case 0x15: // return_call_ref
    case 0x18: // delegate
    case 0x20:
    case 0x21:
    case 0x22:
    case 0x23:
    case 0x24:
    case 0x25:
    case 0x26:
    case 0x3f: // memory.size
    case 0x40: // memory.grow
    case 0xd2: // ref.func
    case 0xd5: // br_on_null
    case 0xd6: // br_on_non_null
      r.u32();
      return op;
    case 0x0e: {
      for (let n = r.u32(); n > 0; n--) r.u32();
      r.u32();
      return op;
    }
    case 0x11:
    case 0x13:
      r.u32();
      r.u32();
      return op;
    case 0x1c:
      for (let n = r.u32(); n > 0; n--) r.byte();
      return op;
    case 0x1f: {
      skipBlockType(r);
      for (let n = r.u32(); n > 0; n--) {
        const kind = r.byte();
        if (kind === 0x00 || kind === 0x01) r.u32();
        r.u32();
      }
      return op;
    }
    case 0x41:
      r.skipSleb(5);
      return op;
    case 0x42:
      r.skipSleb(10);
      return op;
    case 0x43:
      r.skip(4);
      return op;
    case 0x44:
      r.skip(8);
      return op;
    case 0xd0: {
      const b = r.bytes[r.pos];
      if (b === 0x70 || b === 0x6f) r.pos++;
      else r.skipSleb(5);
      return op;
    }
    case 0xfc:
      return (0xfc << 16) | skipFc(r);
    case 0xfd:
      return (0xfd << 16) | skipFd(r);
    case 0xfe:
      return (0xfe << 16) | skipFe(r);
    case 0xfb:
      throw new WasmFormatError("GC instructions (0xFB prefix) are not supported", at);
  }
  if (op >= 0x28 && op <= 0x3e) {
    skipMemarg(r);
    return op;
  }
  // Instructions without immediates: control (0x00, 0x01, 0x05, 0x0a, 0x0b, 0x0f, 0x19),
  // parametric (0x1a, 0x1b), numeric 0x45..0xc4, ref.is_null, ref.eq, ref.as_non_null.
  if (
    op <= 0x01 || op === 0x05 || op === 0x0a || op === 0x0b || op === 0x0f || op === 0x19 ||
    op === 0x1a || op === 0x1b || (op >= 0x45 && op <= 0xc4) || op === 0xd1 || op === 0xd3 ||
    op === 0xd4
  ) {
    return op;
  }
  throw new WasmFormatError(`unknown opcode 0x${op.toString(16)}`, at);
}

function skipFc(r: Reader): number {
  const at = r.pos;
  const sub = r.u32();
  if (sub <= 7) return sub;
  switch (sub) {
    case 8: // memory.init data mem
    case 12: // table.init elem table
    case 14: // table.copy
    case 10: // memory.copy
      r.u32();
      r.u32();
      return sub;
    case 9: // data.drop
    case 11: // memory.fill
    case 13: // elem.drop
    case 15: // table.grow
    case 16: // table.size
    case 17: // table.fill
      r.u32();
      return sub;
  }
  throw new WasmFormatError(`unknown 0xFC instruction ${sub}`, at);
}

function skipFd(r: Reader): number {
  const at = r.pos;
  const sub = r.u32();
  if (sub <= 11 || sub === 92 || sub === 93) {
    skipMemarg(r);
  } else if (sub === 12 || sub === 13) {
    r.skip(16);
  } else if (sub >= 21 && sub <= 34) {
    r.byte();
  } else if (sub >= 84 && sub <= 91) {
    skipMemarg(r);
    r.byte();
  } else if (sub > 0x113) {
    throw new WasmFormatError(`unknown SIMD instruction ${sub}`, at);
  }
  return sub;
}

function skipFe(r: Reader): number {
  const sub = r.u32();
  if (sub === 0x03) r.byte(); // atomic.fence
  else skipMemarg(r);
  return sub;
}

/** Skips a constant expression up to and including its `end` (5.4.9). */
export function skipConstExpr(r: Reader): void {
  for (let i = 0; i < 1 << 16; i++) {
    if (skipInstruction(r) === OP.end) return;
  }
  throw new WasmFormatError("constant expression too long", r.pos);
}
