/**
 * The instruction sequences the rewriter inserts, encoded once per fuel-local
 * index and reused across the functions of a module: a charge (subtract a
 * cost, publish the counter to the global, trap below zero) and a reload of
 * the local from the global.
 *
 * @module
 */

import { encodeU32 } from "./reader.ts";
import { OP } from "./instructions.ts";
import { paddedU32 } from "./writer.ts";

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
}

/** Snippets per fuel-local index, for one module (the global index is fixed per module). */
export type SnippetCache = Map<number, Snippets>;

/** The snippets for fuel local `local` and fuel global `g`, from `cache` or made now. */
export function snippets(cache: SnippetCache, local: number, g: number): Snippets {
  let s = cache.get(local);
  if (!s) {
    const lb = encodeU32(local);
    const gb = encodeU32(g);
    const width = Math.max(lb.length, gb.length);
    const head = [OP.localGet, ...paddedU32(local, width)];
    const charge = [
      ...head,
      ...[0x42, 0, 0, 0, 0, 0], // i64.const cost (patched)
      0x7d, // i64.sub
      ...[OP.localTee, ...lb],
      ...[OP.globalSet, ...gb],
      ...[OP.localGet, ...lb],
      ...[0x42, 0x00], // i64.const 0
      0x53, // i64.lt_s
      ...[OP.if, 0x40],
      OP.unreachable,
      OP.end,
    ];
    s = {
      charge: Uint8Array.from(charge),
      reloadHead: Uint8Array.from([OP.globalGet, ...paddedU32(g, width)]),
      costAt: head.length + 1,
      load: Uint8Array.from([OP.globalGet, ...gb, OP.localSet, ...lb]),
    };
    cache.set(local, s);
  }
  return s;
}
