/**
 * The cost table: what each operation a module can ask for is charged in fuel.
 * Fuel is time: one fuel unit stands for {@link NS_PER_FUEL} ns of the
 * reference machine (calibrated by `deno task bench sandbox`, part
 * `calibration`; the measurements behind every number are in
 * `sandbox/README.md`, "The cost model").
 *
 * - Instructions: 1 each, charged by the rewriter per straight-line region.
 * - Bulk memory and table instructions ({@link BULK_COSTS}): charged at run
 *   time by their length operand, before they run.
 * - Host functions ({@link HOST_COSTS}): a base per call plus a cost per byte,
 *   charged by the host function before it does the work.
 *
 * A new host function adds its row to {@link HOST_COSTS} (key
 * `"<import module>.<name>"`) and charges it with
 * `ModuleContext.charge(cost, bytes, what)` (`host/context.ts`).
 *
 * @module
 */

import { FC } from "./wasm/instructions.ts";

/** Nanoseconds of the reference machine one fuel unit stands for. */
export const NS_PER_FUEL = 1;

/** A charge of `base + perByte × bytes` fuel (bytes: or elements, for tables). */
export interface Cost {
  /** Fuel per call. */
  base: number;
  /** Fuel per byte (per element for table operations); fractions are fine. */
  perByte: number;
}

/**
 * Run-time costs of the bulk instructions, by their 0xFC sub-opcode (Core spec
 * 5.4.6 and 5.4.7), charged on the length operand (bytes for memory, elements
 * for tables). `perByte` must be a multiple of 1/64 (the rewriter charges
 * `(n × perByte × 64) >> 6`). `table.grow` is not charged by its operand: a
 * table only grows, up to 100,000 entries, so all its growth costs a few
 * milliseconds once, and a refused grow costs nothing.
 */
export const BULK_COSTS: Readonly<Record<number, Cost>> = {
  /** memory.init: a call into the runtime (~80 ns), then a copy from the data segment. */
  [FC.memoryInit]: { base: 100, perByte: 1 / 16 },
  /** memory.copy: 0.02-0.07 ns/B over a megabyte. */
  [FC.memoryCopy]: { base: 0, perByte: 1 / 8 },
  /**
   * memory.fill: 0.02-0.04 ns/B over a megabyte. The first touch of a fresh page
   * costs ~0.7 ns/B more, by any instruction; it is paid once per instance and
   * bounded by `limits.memory_bytes` (see README.md).
   */
  [FC.memoryFill]: { base: 0, perByte: 1 / 16 },
  /** table.init: a call into the runtime (~1-2 µs), then each entry with a write barrier. */
  [FC.tableInit]: { base: 2_000, perByte: 40 },
  /** table.copy: 8-19 ns per entry. */
  [FC.tableCopy]: { base: 1_000, perByte: 40 },
  /** table.fill: 8-30 ns per entry. */
  [FC.tableFill]: { base: 1_000, perByte: 40 },
};

/**
 * Fuel per call and per byte of every host function, by `"<import module>.<name>"`.
 * Per-byte costs cover the copies the bytes cause on the runtime's side too (a
 * published payload is copied out of the guest, to the runtime's thread, onto
 * the bus and into the outbox).
 */
export const HOST_COSTS: Readonly<Record<string, Cost>> = {
  "edge.log": { base: 1_000, perByte: 1 },
  "edge.publish": { base: 5_000, perByte: 4 },
  /** A round trip to the runtime's thread, which resolves, checks and reads the file. */
  "edge.sensor_read": { base: 200_000, perByte: 2 },
  /** Answered by the Worker's kv cache. */
  "edge.kv_get": { base: 1_000, perByte: 1 },
  /** Charged on top of `edge.kv_get` when the cache cannot answer: a round trip. */
  "edge.kv_get.miss": { base: 50_000, perByte: 1 },
  /** A round trip to the runtime's thread and a SQLite write. */
  "edge.kv_set": { base: 50_000, perByte: 2 },
  "edge.now_ms": { base: 250, perByte: 0 },
  "wasi_snapshot_preview1.fd_write": { base: 6_000, perByte: 3 },
  "wasi_snapshot_preview1.random_get": { base: 2_500, perByte: 2 },
  "wasi_snapshot_preview1.clock_time_get": { base: 700, perByte: 0 },
};

/** What a host function without a row of its own costs per call. */
export const DEFAULT_HOST_COST: Cost = { base: 200, perByte: 0 };

/** The cost of host function `key` (`"<import module>.<name>"`). */
export function hostCost(key: string): Cost {
  return HOST_COSTS[key] ?? DEFAULT_HOST_COST;
}

/** The wall-clock guard's allowance for what the calibration does not cover (GC, preemption). */
export const DEADLINE_SLACK_MS = 100;
/** How many times its calibrated time a call may take before it is an overrun. */
export const DEADLINE_FACTOR = 4;

/**
 * The wall-clock deadline of one guest call with `fuel` fuel: its budget's
 * calibrated time ({@link NS_PER_FUEL}) times {@link DEADLINE_FACTOR}, plus
 * {@link DEADLINE_SLACK_MS}. 10 M fuel (the default): 140 ms. A call past it
 * is an overrun: something fuel does not see (a slow disk, a stalled machine,
 * an instruction mix slower than calibrated) held its Worker.
 */
export function callDeadlineMs(fuel: number): number {
  return DEADLINE_SLACK_MS + (DEADLINE_FACTOR * fuel * NS_PER_FUEL) / 1e6;
}
