import assert from "node:assert/strict";
import {
  compileArgs,
  compileTarget,
  ENGINE_FILES,
  INCLUDE,
  stageEngineFiles,
} from "../../scripts/compile.ts";
import { runFlags, RUNTIME_PERMISSIONS, sourceRunFlags } from "../../scripts/_flags.ts";
import denoJson from "../../deno.json" with { type: "json" };

const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("compile: every module of the binary's graph is local or npm, so it can be embedded", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", `${ROOT}main.ts`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout));
  const remote = (info.modules as { specifier: string; error?: string }[])
    .filter((m) => !/^(file|npm|node):/.test(m.specifier));
  assert.deepEqual(remote.map((m) => m.specifier), [], "no http/jsr modules");
  const broken = (info.modules as { specifier: string; error?: string }[]).filter((m) => m.error);
  assert.deepEqual(broken, [], "every module resolves");
  for (const f of INCLUDE) await Deno.stat(`${ROOT}${f}`); // every embedded file exists
});

Deno.test("compile: only onnxruntime-web's bundle and wasm are staged and embedded for the engine", async () => {
  const bytes = await stageEngineFiles();
  const sizes = await Promise.all(ENGINE_FILES.map(async (f) => (await Deno.stat(f)).size));
  assert.equal(bytes, sizes[0] + sizes[1]);
  assert.ok(sizes[1] > 10_000_000 && sizes[1] < 20_000_000, `wasm ${sizes[1]} bytes`);
  const args = compileArgs(Deno.build.target, "/tmp/x");
  for (const f of ENGINE_FILES) assert.ok(args.includes(f), `--include ${f}`);
  assert.ok(!args.some((a) => a.includes("node_modules") || a.includes("onnxruntime-web/dist")));
});

Deno.test("compile: deno.json's dev task runs with exactly the baked-in flags", () => {
  const dev = denoJson.tasks.dev;
  for (const flag of sourceRunFlags()) assert.ok(dev.includes(flag), `dev task lacks ${flag}`);
  assert.ok(runFlags().every((f) => sourceRunFlags().includes(f)));
  assert.ok(!dev.includes("--allow-all") && !/(^|\s)-A(\s|$)/.test(dev), "no --allow-all");
  assert.ok(RUNTIME_PERMISSIONS.every((p) => p.startsWith("--allow-")));
});

Deno.test("compile: builds a runnable binary, or says plainly why it cannot here", async () => {
  const outDir = await Deno.makeTempDir();
  let binary: string;
  try {
    binary = await compileTarget(Deno.build.target, outDir);
  } catch (err) {
    const msg = (err as Error).message;
    // The documented outcome on a machine that cannot reach Deno's download host.
    assert.match(msg, /could not fetch its runtime \(denort\)/);
    assert.match(msg, /DENORT_BIN/);
    assert.deepEqual([...Deno.readDirSync(outDir)], [], "no fake binary, no leftovers");
    console.log(`NOT RUN here: ${msg.split("\n")[0]}`);
    return;
  }
  const v = await new Deno.Command(binary, { args: ["version", "--json"], stdout: "piped" })
    .output();
  assert.equal(v.code, 0);
  const info = JSON.parse(new TextDecoder().decode(v.stdout));
  assert.equal(info.compiled, true);
  assert.equal(info.target, Deno.build.target);
});
