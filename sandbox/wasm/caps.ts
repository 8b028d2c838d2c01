/**
 * Memory and table caps written into the binary: each memory's and table's
 * maximum becomes min(declared, cap), so `memory.grow` and `table.grow` past
 * the manifest's limits return -1 inside the module (Core spec 4.4.7.12,
 * 4.4.6.6) and V8 never reserves more.
 *
 * @module
 */

import { WasmFormatError } from "./reader.ts";
import type { Reader } from "./reader.ts";
import { readLimits, readValType } from "./parse.ts";
import type { Writer } from "./writer.ts";

function writeCappedLimits(w: Writer, min: number, max: number | undefined, cap: number): void {
  w.byte(0x01); // limits with a maximum (5.3.7)
  w.u32(min);
  w.u32(Math.max(min, Math.min(max ?? cap, cap)));
}

/** Rewrites the memory section (5.5.8) read by `r` into `w`, every maximum at most `capPages`. */
export function capMemories(r: Reader, w: Writer, capPages: number): boolean {
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

/** Rewrites the table section (5.5.7) read by `r` into `w`, every maximum at most `capEntries`. */
export function capTables(r: Reader, w: Writer, capEntries: number): boolean {
  const n = r.u32();
  w.u32(n);
  for (let i = 0; i < n; i++) {
    const typeAt = r.pos;
    readValType(r);
    w.copy(r.bytes, typeAt, r.pos);
    const at = r.pos;
    const l = readLimits(r);
    // Bulk charges read a table length as an i32 (meter_function.ts).
    if (l.memory64) throw new WasmFormatError("64-bit tables are not supported", at);
    writeCappedLimits(w, l.min, l.max, capEntries);
  }
  return true;
}
