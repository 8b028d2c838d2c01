/**
 * Quarantine runs on the monotonic clock: a gateway without a real-time clock
 * sets its system clock (NTP) minutes after booting, by years, and that must
 * neither keep a module quarantined nor free it early.
 */
import assert from "node:assert/strict";
import { Quarantine } from "../../sandbox/quarantine.ts";
import type { ModuleRecord } from "../../sandbox/module_record.ts";

const DAY_MS = 86_400_000;

function record(): ModuleRecord {
  return {
    manifest: { name: "m" },
    state: "running",
    until: 0,
    backoffMs: 200,
    consecutive: 0,
    s: { errors: 0, faults: { trap: 0 }, last_error: null },
  } as unknown as ModuleRecord;
}

/** Runs `fn` with the system clock moved by `offsetMs` (the monotonic clock untouched). */
async function withClockMoved<T>(offsetMs: number, fn: () => Promise<T> | T): Promise<T> {
  const real = Date.now;
  Date.now = () => real() + offsetMs;
  try {
    return await fn();
  } finally {
    Date.now = real;
  }
}

Deno.test("a quarantine ends after its back-off, whatever the system clock does meanwhile", async () => {
  const q = new Quarantine(1, 200);
  for (const offset of [-DAY_MS, DAY_MS]) {
    const r = record();
    q.fault(r, { kind: "trap", message: "unreachable" });
    assert.equal(r.state, "quarantined");
    await withClockMoved(offset, async () => {
      q.release(r);
      assert.equal(r.state, "quarantined", `not freed by a clock moved ${offset} ms`);
      await new Promise((res) => setTimeout(res, 260));
      q.release(r);
      assert.equal(r.state, "running", `freed after its 200 ms with the clock moved ${offset} ms`);
    });
  }
});
