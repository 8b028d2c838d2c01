import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).pathname;

async function run(args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout) + dec.decode(o.stderr) };
}

Deno.test("the tree is deno fmt clean", async () => {
  const r = await run(["fmt", "--check"]);
  assert.equal(r.code, 0, r.out.slice(-2000));
});

Deno.test("the tree is deno lint clean", async () => {
  const r = await run(["lint"]);
  assert.equal(r.code, 0, r.out.slice(-2000));
});
