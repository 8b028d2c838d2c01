/**
 * Read planning: the points of one adapter grouped into as few read requests
 * as the protocol allows. Points of one table whose addresses touch or
 * overlap share a request while it stays within 125 registers or 2000 bits
 * (application protocol 6.1-6.4). Gaps are never read across: an address
 * between two points may not exist on the device, and reading it would fail
 * both points with "illegal data address".
 *
 * @module
 */
import { FC, MAX_READ_BITS, MAX_READ_REGISTERS, type ReadFunction, readsBits } from "./pdu.ts";

/** The four Modbus tables. */
export type Table = "holding" | "input" | "coil" | "discrete";

/** The read function of each table. */
export const READ_FUNCTION: Readonly<Record<Table, ReadFunction>> = {
  coil: FC.READ_COILS,
  discrete: FC.READ_DISCRETE_INPUTS,
  holding: FC.READ_HOLDING_REGISTERS,
  input: FC.READ_INPUT_REGISTERS,
};

/** What the planner needs of a point. */
export interface PlanPoint {
  table: Table;
  address: number;
  /** Registers (or bits) it spans. */
  span: number;
}

/** One read request and the points it serves. */
export interface ReadBlock {
  fc: ReadFunction;
  address: number;
  quantity: number;
  /** Indexes into the planned points, with each one's offset in the block. */
  members: { index: number; at: number }[];
}

/**
 * Groups `points` into read blocks, in table then address order.
 *
 * @example
 * ```ts
 * planReads([
 *   { table: "holding", address: 0, span: 2 },
 *   { table: "holding", address: 2, span: 1 },
 *   { table: "holding", address: 10, span: 1 },
 * ]); // two blocks: 0..2 (both first points) and 10
 * ```
 */
export function planReads(points: readonly PlanPoint[]): ReadBlock[] {
  const blocks: ReadBlock[] = [];
  const order = points.map((p, index) => ({ p, index }))
    .sort((a, b) =>
      a.p.table.localeCompare(b.p.table) || a.p.address - b.p.address || b.p.span - a.p.span
    );
  let cur: ReadBlock | null = null;
  let curTable: Table | null = null;
  for (const { p, index } of order) {
    const fc = READ_FUNCTION[p.table];
    const max = readsBits(fc) ? MAX_READ_BITS : MAX_READ_REGISTERS;
    const end = p.address + p.span;
    if (
      cur && curTable === p.table && p.address <= cur.address + cur.quantity &&
      Math.max(end, cur.address + cur.quantity) - cur.address <= max
    ) {
      cur.quantity = Math.max(end, cur.address + cur.quantity) - cur.address;
      cur.members.push({ index, at: p.address - cur.address });
      continue;
    }
    cur = { fc, address: p.address, quantity: p.span, members: [{ index, at: 0 }] };
    curTable = p.table;
    blocks.push(cur);
  }
  return blocks;
}
