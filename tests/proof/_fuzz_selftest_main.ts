/**
 * Runs the fuzz runner's self-test inputs (target `_selftest`) and prints
 * each finding as `index kind`, one per line. A process of its own, so the
 * RSS bound it checks is this process's alone: in the test process, test
 * files running beside it (`--parallel`) grow the same RSS.
 *
 * @module
 */
import { replay } from "../../scripts/fuzz/mod.ts";

const enc = new TextEncoder();
const inputs = ["ok", "refuse", "crash", "oracle", "hang", "ok", "alloc", "ok"].map((s) =>
  enc.encode(s)
);
const findings = await replay("_selftest", inputs, {
  timeoutMs: 3000,
  rssBoundBytes: Deno.memoryUsage().rss + 128 * 2 ** 20,
});
for (const f of findings) console.log(`${f.index} ${f.kind}`);
// As `deno task fuzz` does: a Worker stopped in the middle of an endless loop may keep the
// process from ending by itself.
Deno.exit(0);
