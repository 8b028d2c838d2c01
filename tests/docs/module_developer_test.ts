/**
 * A module developer's first hour, as the docs tell it: the README's quick
 * start against `deno task dev`, the examples README's "try one", the
 * operators' guide's alert walk-through, the steps
 * of docs/modules.md "Testing a module locally", and the build command of
 * each language in docs/modules.md, which must reproduce the committed
 * `module.wasm` byte for byte (as each example's build.sh must).
 */
import assert from "node:assert/strict";
import { sha256Hex } from "../../lib/mod.ts";
import { bash, copyCheckout, ROOT, session, snippet, startDev } from "./_docs.ts";

/** The JSON objects curl printed one after the other (curl adds no newline). */
// deno-lint-ignore no-explicit-any
function jsonValues(text: string): any[] {
  return text.trim().replace(/\}\s*\{/g, "}\n{").split("\n").map((l) => JSON.parse(l));
}

Deno.test("README, examples and modules.md walk-through against deno task dev", async () => {
  const dev = await startDev(await copyCheckout());
  try {
    const ports = { 8080: dev.port };

    const readme = await session(
      "README.md",
      ["readme-quickstart", "readme-module", "readme-metrics"],
      { cwd: dev.dir, ports },
    );
    assert.equal(readme.code, 0, readme.stderr);
    const quick = readme.out["readme-quickstart"];
    assert.match(quick, /^\{"status":"ok"\}/);
    assert.match(quick, /\{"accepted":1\}/);
    assert.match(quick, /^edged_ingest_readings_total\{outcome="accepted"\} 1$/m);
    const [installed, accepted] = jsonValues(readme.out["readme-module"]);
    assert.equal(installed.state, "running");
    assert.deepEqual(accepted, { accepted: 1 });
    // 81.5 is above the threshold: the module published one alert.
    assert.match(
      readme.out["readme-metrics"],
      /^edged_module_messages_total\{module="threshold-alert",direction="out"\} 1$/m,
    );

    const tryOne = await session("examples/modules/README.md", ["examples-try"], {
      cwd: dev.dir,
      ports,
    });
    assert.equal(tryOne.code, 0, tryOne.stderr);
    const [put, ingest, status] = jsonValues(tryOne.out["examples-try"]);
    assert.equal(put.name, "threshold-alert");
    assert.deepEqual(ingest, { accepted: 1 });
    assert.equal(status.state, "running");

    const ops = await session("docs/operators.md", ["operators-alert", "operators-deliver"], {
      cwd: dev.dir,
      ports,
    });
    assert.equal(ops.code, 0, ops.stderr);
    assert.match(
      ops.out["operators-alert"],
      /"alerts":\[\{[^\]]*"topic":"alerts\/pump-7\/temperature"/,
    );
    const direct = JSON.parse(ops.out["operators-deliver"]);
    assert.equal(direct.status, 0);
    assert.equal(direct.published[0].topic, "alerts/pump-9/temperature");
    assert.equal(direct.published[0].payload.state, "high");
    assert.deepEqual(direct.logs, [{ level: 1, message: "pump-9 high: 90 (threshold 75)" }]);

    const local = await session(
      "docs/modules.md",
      ["modules-validate", "modules-install", "modules-deliver"],
      { cwd: dev.dir, ports, timeoutMs: 180_000 },
    );
    assert.equal(local.code, 0, local.stderr);
    const wasm = await Deno.readFile(`${ROOT}examples/modules/relay-wat/module.wasm`);
    const digest = await sha256Hex(wasm);
    assert.match(local.out["modules-validate"], new RegExp(`^${digest}  examples/`, "m"));
    assert.match(
      local.out["modules-validate"],
      new RegExp(`^ok: relay 1\\.0\\.0 \\(${wasm.length} bytes, sha256 ${digest}\\)$`, "m"),
    );
    assert.equal(JSON.parse(local.out["modules-install"]).state, "running");
    const answer = JSON.parse(local.out["modules-deliver"]);
    // What the doc shows as the answer; fuel_used is elided there (it follows the cost table).
    const shown = (await snippet("docs/modules.md", "modules-deliver")).split("\n")
      .find((l) => l.startsWith("# {"))!.slice(2).replace('"fuel_used":...', '"fuel_used":0');
    const { fuel_used, ...rest } = answer;
    assert.ok(fuel_used > 0, `fuel_used ${fuel_used}`);
    assert.deepEqual({ ...rest, fuel_used: 0 }, JSON.parse(shown));
  } finally {
    await dev.stop();
  }
});

/** Each language's build block in docs/modules.md and the example folder it builds. */
const DOC_BUILDS = [
  ["build-c", "threshold-alert-c"],
  ["build-rust", "counter-rust"],
  ["build-wat", "relay-wat"],
  ["build-as", "moving-average-as"],
] as const;

/**
 * Runs `code` in `example`'s folder of a fresh copy of the checkout (some
 * build scripts use the repository's scripts), its module.wasm removed
 * first; resolves with the module.wasm it built.
 */
async function buildInCopy(example: string, code: string): Promise<Uint8Array> {
  const copy = await copyCheckout();
  try {
    const dir = `${copy}/examples/modules/${example}`;
    await Deno.remove(`${dir}/module.wasm`);
    const r = await bash(code, { cwd: dir, timeoutMs: 300_000 });
    assert.equal(r.code, 0, `${example}: ${code}\n${r.stdout}\n${r.stderr}`);
    return await Deno.readFile(`${dir}/module.wasm`);
  } finally {
    await Deno.remove(copy, { recursive: true });
  }
}

for (const [block, example] of DOC_BUILDS) {
  Deno.test(`modules.md ${block} rebuilds ${example}'s committed module.wasm byte for byte`, async () => {
    const built = await buildInCopy(example, await snippet("docs/modules.md", block));
    assert.deepEqual(built, await Deno.readFile(`${ROOT}examples/modules/${example}/module.wasm`));
  });
}

Deno.test("every example's build.sh rebuilds its committed module.wasm, whose digest its manifest carries", async () => {
  const examples = [...Deno.readDirSync(`${ROOT}examples/modules`)]
    .filter((e) => e.isDirectory && e.name !== "node_modules").map((e) => e.name).sort();
  for (const b of DOC_BUILDS) assert.ok(examples.includes(b[1]), b[1]);
  for (const example of examples) {
    const committed = await Deno.readFile(`${ROOT}examples/modules/${example}/module.wasm`);
    const manifest = JSON.parse(
      await Deno.readTextFile(`${ROOT}examples/modules/${example}/manifest.json`),
    );
    assert.equal(manifest.sha256, await sha256Hex(committed), `${example}: manifest sha256`);
    assert.deepEqual(await buildInCopy(example, "sh build.sh"), committed, `${example}: bytes`);
  }
});

Deno.test("relay-wat/build.sh without Debian's wabt builds the same bytes with npm's wabt 1.0.32", async () => {
  const dir = await Deno.makeTempDir({ prefix: "edged-relay-npm-" });
  try {
    // A PATH with what the script and npx need, and no wat2wasm.
    await Deno.mkdir(`${dir}/bin`);
    for (const tool of ["sh", "dirname", "node", "npm", "npx", "env", "cat"]) {
      const which = await bash(`command -v ${tool}`, { cwd: dir });
      assert.equal(which.code, 0, `${tool} is installed`);
      await Deno.symlink(which.stdout.trim(), `${dir}/bin/${tool}`);
    }
    await bash(`cp -R '${ROOT}examples/modules/relay-wat' m && rm m/module.wasm`, { cwd: dir });
    const r = await bash(`sh m/build.sh`, {
      cwd: dir,
      env: { PATH: `${dir}/bin` },
      timeoutMs: 180_000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      await Deno.readFile(`${dir}/m/module.wasm`),
      await Deno.readFile(`${ROOT}examples/modules/relay-wat/module.wasm`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
