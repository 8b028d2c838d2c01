/**
 * Density under a limited address space (ulimit -v), as on aarch64 boards
 * with a 39-bit address space: the rewriter caps every memory's maximum at
 * limits.memory_bytes, and V8 then reserves that much, not a multi-GiB
 * guard region per memory.
 */
import assert from "node:assert/strict";

const CHILD = new URL("./_density_child.ts", import.meta.url).pathname;
const COUNT = 1024;
// Deno itself needs 33-40 GiB of address space to start (V8's cages: at 32 GiB its
// Oilpan heap reservation always fails, at 40-48 GiB now and then), so the limit is
// 64 GiB. That leaves room for three 8 GiB guard regions, not 1,024; the assertion
// on the growth below is the real proof.
const LIMIT_KIB = 64 * 1024 * 1024;

Deno.test(`${COUNT} modules load and answer under ulimit -v ${LIMIT_KIB} KiB`, async () => {
  const out = await new Deno.Command("bash", {
    args: [
      "-c",
      `ulimit -v ${LIMIT_KIB} && exec "$0" run --allow-all "$1" ${COUNT}`,
      Deno.execPath(),
      CHILD,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  const result = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
  assert.equal(result.answered, COUNT);
  // About 1 MiB of address space per module (the cap), far from 8 GiB guard regions.
  assert.ok(result.grewKiB < COUNT * 2 * 1024, `address space grew by ${result.grewKiB} KiB`);
});
