import assert from "node:assert/strict";
import {
  compileArgs,
  compileTarget,
  engineFiles,
  prepareBundle,
  stageEngineFiles,
} from "../../scripts/compile.ts";
import { bundledPath, WORKER_ENTRIES } from "../../scripts/bundle.ts";
import { runFlags, RUNTIME_PERMISSIONS, sourceRunFlags } from "../../scripts/_flags.ts";
import denoJson from "../../deno.json" with { type: "json" };

Deno.test("compile: the bundle it embeds resolves every module to its own files, with no deno.json", async () => {
  const dir = await Deno.makeTempDir({ prefix: "edged-bundle-" });
  try {
    await prepareBundle(dir);
    for (const entry of ["main.ts", ...WORKER_ENTRIES].map(bundledPath)) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["info", "--json", "--no-config", `${dir}/${entry}`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      const info = JSON.parse(new TextDecoder().decode(out.stdout));
      const modules = info.modules as { specifier: string; error?: string }[];
      // No npm package is left to resolve at run time, and nothing remote.
      const foreign = modules.filter((m) => !/^(file|node):/.test(m.specifier));
      assert.deepEqual(foreign.map((m) => m.specifier), [], `${entry}: only files and node:`);
      assert.deepEqual(modules.filter((m) => m.error), [], `${entry}: every module resolves`);
    }
    const args = compileArgs(Deno.build.target, "/tmp/x", dir);
    for (const f of WORKER_ENTRIES) assert.ok(args.includes(`${dir}/${bundledPath(f)}`), f);
    assert.equal(args.at(-1), `${dir}/main.js`);
    assert.ok(args.includes("--no-config"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compile: only onnxruntime-web's bundle and wasm are staged and embedded for the engine", async () => {
  const dir = await Deno.makeTempDir({ prefix: "edged-bundle-" });
  try {
    const bytes = await stageEngineFiles(`${dir}/engine`);
    const files = engineFiles(`${dir}/engine`);
    const sizes = await Promise.all(files.map(async (f) => (await Deno.stat(f)).size));
    assert.equal(bytes, sizes[0] + sizes[1]);
    assert.ok(sizes[1] > 10_000_000 && sizes[1] < 20_000_000, `wasm ${sizes[1]} bytes`);
    const args = compileArgs(Deno.build.target, "/tmp/x", dir);
    for (const f of files) assert.ok(args.includes(f), `--include ${f}`);
    assert.ok(!args.some((a) => a.includes("node_modules") || a.includes("onnxruntime-web/dist")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
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
