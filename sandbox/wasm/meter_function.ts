/**
 * Metering of one function body, in one pass: a charge at the entry and at the
 * top of every `loop` body (the target of its back-edges), each costing the
 * instructions of the straight-line region it heads (nested loops excluded,
 * both arms of an `if` counted), so a charge is an upper bound of the work
 * until the next one.
 *
 * Fuel lives in a new i64 local while the function runs (a register, not
 * memory); every charge also writes it to the global, so the global is always
 * the fuel left as of the last charge (exact for the host after any trap) and
 * nothing has to be written back on the way out of a function:
 * entry: local = global - cost; global = local; trap if negative
 * loop top: local -= cost; global = local; trap if negative
 * after a call, and where a caught exception lands: local = global
 *
 * A bulk instruction (memory.fill, memory.copy, memory.init, table.fill,
 * table.copy, table.init, table.grow) is charged again just before it runs, by
 * its length operand (`BULK_COSTS` in `costs.ts`), so its time is fuel too.
 *
 * The original bytes are copied in spans between insertion points; a charge's
 * cost, known only when its region closes, is patched into a fixed-width slot.
 *
 * @module
 */

import { WasmFormatError } from "./reader.ts";
import {
  catchCount,
  catchLabels,
  IMM,
  K_NONE,
  leb,
  lebEnd,
  OP,
  prefixedSub,
  SIMPLE_VALTYPE,
  skipBlockType,
  skipFixed,
  skipImmediates,
  skipLeb,
} from "./instructions.ts";
import {
  bulkCharge,
  type BulkCost,
  type FuelGlobals,
  type SnippetCache,
  type Snippets,
  snippets,
} from "./fuel_snippets.ts";
import { putPaddedSleb5, type Writer } from "./writer.ts";

/** V8's limit on locals per function (kV8MaxWasmFunctionLocals). */
const MAX_LOCALS = 50_000;

/** The snippets of the previous function (most functions of a module share a fuel-local index). */
let lastLocals = -1;
let lastCache: SnippetCache | null = null;
let lastSnippets: Snippets | null = null;

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
 * Meters one function body src[start, end) (its local declarations and code)
 * into `out`: the function has `params` parameters, `gs` are the fuel globals,
 * `bulk` the run-time costs of bulk instructions by 0xFC sub-opcode, `f` the
 * body's index (for messages), `cache` the module's snippets.
 * @throws {WasmFormatError} when the body cannot be decoded.
 */
export function meterFunction(
  src: Uint8Array,
  start: number,
  end: number,
  params: number,
  gs: FuelGlobals,
  bulk: Readonly<Record<number, BulkCost>>,
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
    : snippets(cache, locals, gs);
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
      p = skipFixed(kind, src, p, end);
      continue;
    }
    // Opcodes that open or close blocks, call, catch, or have irregular immediates.
    let reloadAfter = false;
    switch (op) {
      case OP.loop: {
        // A charge at the top of its body, the target of every back-edge.
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
      case OP.block:
      case OP.if:
      case OP.try: // legacy exception handling
        p = skipBlockType(src, p, end);
        if (depth === frameFlags.length) growFrames();
        frameFlags[depth++] = 0;
        continue;
      case OP.tryTable: {
        // Each catch clause branches to a label when an exception lands.
        p = skipImmediates(op, src, p, end);
        let own = 0;
        for (let i = 0; i < catchCount; i++) {
          const label = catchLabels[i];
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
      case OP.end:
      case OP.delegate: {
        // delegate (legacy exception handling) closes its try like an end
        if (op === OP.delegate) p = skipLeb(src, p, end, 5);
        if (depth === 0) {
          if (op === OP.delegate) throw new WasmFormatError("delegate outside a try", at);
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
      case OP.call:
      case OP.callRef:
      case OP.callIndirect:
      case OP.catch: // legacy: an exception thrown by a callee lands here
      case OP.catchAll:
        p = skipImmediates(op, src, p, end);
        reloadAfter = true;
        break;
      default:
        // br_table, typed select, ref.null, prefixed instructions; refuses unknown opcodes
        p = skipImmediates(op, src, p, end);
        if (op === OP.prefixFc) {
          const b = bulkCharge(s, prefixedSub, bulk[prefixedSub], locals, gs);
          if (b !== null) {
            out.copy(src, copied, at); // up to the instruction, then its charge
            copied = at;
            out.bytes(b);
          }
        }
        continue;
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
