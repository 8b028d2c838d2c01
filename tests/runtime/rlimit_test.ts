/**
 * runtime/rlimit.ts against this process's real limits: a soft limit below
 * the hard one (lowered with util-linux `prlimit --pid`) is raised through
 * libc, and one already at the hard limit is left as it is. `deno run` raises
 * the soft limit itself before any code runs, so the test lowers it first.
 */
import assert from "node:assert/strict";
import { raiseOpenFileLimit } from "../../runtime/mod.ts";

function limits(): { soft: number; hard: number } {
  const line = Deno.readTextFileSync("/proc/self/limits").split("\n")
    .find((l) => l.startsWith("Max open files"))!;
  const [, soft, hard] = /^Max open files\s+(\S+)\s+(\S+)/.exec(line)!;
  const n = (v: string) => (v === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(v));
  return { soft: n(soft), hard: n(hard) };
}

async function setSoft(soft: number, hard: number): Promise<void> {
  const out = await new Deno.Command("prlimit", {
    args: [
      "--pid",
      String(Deno.pid),
      `--nofile=${soft}:${hard === Number.MAX_SAFE_INTEGER ? "unlimited" : hard}`,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

Deno.test("raiseOpenFileLimit raises a soft limit below the hard one, and leaves one at it", async () => {
  const before = limits();
  assert.ok(before.hard > 512, `hard limit ${before.hard} too low for this test`);
  const lowered = 512;
  await setSoft(lowered, before.hard);
  try {
    assert.equal(limits().soft, lowered);
    const raised = await raiseOpenFileLimit();
    assert.equal(raised.error, undefined);
    assert.equal(raised.raisedFrom, lowered);
    assert.equal(limits().soft, raised.soft);
    assert.ok(raised.soft > lowered);

    // At the hard limit now: nothing to raise, nothing failed.
    const again = await raiseOpenFileLimit();
    assert.deepEqual(again, { soft: limits().soft, hard: limits().hard });
  } finally {
    await setSoft(before.soft, before.hard);
  }
});
