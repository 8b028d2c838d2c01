/**
 * The instruction sequences the rewriter inserts, encoded once per fuel-local
 * index and reused across the functions of a module: a charge (subtract a
 * cost, publish the counter to the global, trap below zero), a reload of the
 * local from the global, and the run-time charge of a bulk instruction by its
 * length operand.
 *
 * @module
 */

import { encodeU32 } from "./reader.ts";
import { OP } from "./instructions.ts";
import { paddedU32 } from "./writer.ts";

/** A run-time cost of a bulk instruction: `base + perByte × n` fuel for length operand n. */
export interface BulkCost {
  base: number;
  /** A multiple of 1/64. */
  perByte: number;
}

/** The module's fuel global and the i32 global the bulk charges park their length operand in. */
export interface FuelGlobals {
  fuel: number;
  scratch: number;
}

/** Byte sequences of one fuel local (index known per function) and the module's fuel global. */
export interface Snippets {
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
  /** Bulk charges by 0xFC sub-opcode, made on first use (see {@link bulkCharge}). */
  bulk: (Uint8Array | null | undefined)[];
}

/** Snippets per fuel-local index, for one module (the global index is fixed per module). */
export type SnippetCache = Map<number, Snippets>;

/** The snippets for fuel local `local` and the globals `gs`, from `cache` or made now. */
export function snippets(cache: SnippetCache, local: number, gs: FuelGlobals): Snippets {
  let s = cache.get(local);
  if (!s) {
    const g = gs.fuel;
    const lb = encodeU32(local);
    const gb = encodeU32(g);
    const width = Math.max(lb.length, gb.length);
    const head = [OP.localGet, ...paddedU32(local, width)];
    const charge = [
      ...head,
      ...[0x42, 0, 0, 0, 0, 0], // i64.const cost (patched)
      0x7d, // i64.sub
      ...publishAndTrapBelowZero(lb, gb),
    ];
    s = {
      charge: Uint8Array.from(charge),
      reloadHead: Uint8Array.from([OP.globalGet, ...paddedU32(g, width)]),
      costAt: head.length + 1,
      load: Uint8Array.from([OP.globalGet, ...gb, OP.localSet, ...lb]),
      bulk: [],
    };
    cache.set(local, s);
  }
  return s;
}

/**
 * After the i64.sub of a charge (the new counter on the stack): local.tee;
 * global.set (the counter is published); local.get; i64.const 0; i64.lt_s;
 * if; unreachable; end (a trap below zero). `lb`/`gb`: the encoded indices.
 */
function publishAndTrapBelowZero(lb: number[], gb: number[]): number[] {
  return [
    ...[OP.localTee, ...lb],
    ...[OP.globalSet, ...gb],
    ...[OP.localGet, ...lb],
    ...[0x42, 0x00], // i64.const 0
    0x53, // i64.lt_s
    ...[OP.if, 0x40],
    OP.unreachable,
    OP.end,
  ];
}

/** Signed LEB128 of a non-negative safe integer (an i64.const immediate, 5.2.2). */
function sleb(v: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = v % 128;
    v = Math.floor(v / 128);
    if (v === 0 && (b & 0x40) === 0) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/**
 * The charge of a bulk instruction whose length operand (an i32) is on top of
 * the stack, inserted just before it; it leaves the operand where it was:
 * scratch = n; local -= base + (n × perByte × 64 >> 6); global = local;
 * trap if negative; push scratch. Null when `cost` is undefined.
 */
export function bulkCharge(
  s: Snippets,
  sub: number,
  cost: BulkCost | undefined,
  local: number,
  gs: FuelGlobals,
): Uint8Array | null {
  let b = s.bulk[sub];
  if (b !== undefined) return b;
  if (!cost) return s.bulk[sub] = null;
  const mul = Math.round(cost.perByte * 64);
  if (mul !== cost.perByte * 64 || mul < 0 || cost.base < 0) {
    throw new RangeError(`bulk cost of 0xFC ${sub} must be a non-negative multiple of 1/64`);
  }
  const lb = encodeU32(local);
  const gb = encodeU32(gs.fuel);
  const sb = encodeU32(gs.scratch);
  b = Uint8Array.from([
    ...[OP.globalSet, ...sb],
    ...[OP.localGet, ...lb],
    ...[OP.globalGet, ...sb],
    0xad, // i64.extend_i32_u
    ...[0x42, ...sleb(mul)],
    0x7e, // i64.mul
    ...[0x42, 6],
    0x88, // i64.shr_u
    ...[0x42, ...sleb(cost.base)],
    0x7c, // i64.add
    0x7d, // i64.sub
    ...publishAndTrapBelowZero(lb, gb),
    ...[OP.globalGet, ...sb],
  ]);
  return s.bulk[sub] = b;
}
