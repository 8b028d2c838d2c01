/**
 * `--help` never does work, and an unknown flag is a usage error: every
 * deno task, every `edged` sub-command (walked from the real command tree,
 * so new ones are covered without editing this file) and every script a
 * user runs by hand answers `--help` with its usage and exit 0, and an
 * unknown flag with exit 2. A task that started working instead (a
 * benchmark, a build, the suite) would not answer within the time bound
 * and writes nothing into the checkout.
 */
import assert from "node:assert/strict";
import { type Command, CommanderError } from "commander";
import { buildProgram } from "../../app/mod.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const TASKS = Object.keys(JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks);
/** A process answering --help has printed and exited long before this. */
const BOUND_MS = 60_000;
/** The data directory, should a task start edged after all. */
const SCRATCH = await Deno.makeTempDir({ prefix: "edged-help-" });
globalThis.addEventListener("unload", () => Deno.removeSync(SCRATCH, { recursive: true }));

interface Run {
  code: number;
  out: string;
  err: string;
}

async function run(cmd: string, args: string[]): Promise<Run> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // Never the real data directory or port, should a task start edged after all.
    env: { EDGED_DATA_DIR: SCRATCH, EDGED_LISTEN: "127.0.0.1:0", NO_COLOR: "1" },
    signal: AbortSignal.timeout(BOUND_MS),
  }).output();
  const d = new TextDecoder();
  return { code: out.code, out: d.decode(out.stdout), err: d.decode(out.stderr) };
}

/** Runs `jobs` with at most `n` at a time (2 cores shared by many). */
async function pool<T>(n: number, jobs: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  }));
  return results;
}

/** The files a task must not have written while answering --help. */
async function checkoutState(): Promise<string> {
  const names = ["bench-report.md", "dist", "data", "test-results"];
  const seen = await Promise.all(
    names.map((n) => Deno.stat(`${ROOT}${n}`).then((s) => `${n}:${s.mtime?.getTime()}`, () => "")),
  );
  return seen.join(",");
}

function assertHelp(what: string, r: Run, usage: RegExp): void {
  assert.equal(r.code, 0, `${what} --help: exit ${r.code}\n${r.err}`);
  assert.match(r.out, usage, `${what} --help prints its usage`);
}

function assertUsageError(what: string, r: Run): void {
  assert.equal(r.code, 2, `${what} --no-such-flag: exit ${r.code}\n${r.out}${r.err}`);
  // Commander names the unknown flag, or first a missing required option.
  assert.match(r.err, /error: (unknown option '--no-such-flag'|required option)|unknown/i, what);
}

Deno.test("every deno task answers --help (exit 0, no work) and refuses an unknown flag (exit 2)", async () => {
  assert.ok(TASKS.length >= 12, `tasks: ${TASKS.join(", ")}`);
  const before = await checkoutState();
  const results = await pool(
    3,
    TASKS.flatMap((t) => [
      () => run(Deno.execPath(), ["task", "--quiet", t, "--help"]),
      () => run(Deno.execPath(), ["task", "--quiet", t, "--no-such-flag"]),
    ]),
  );
  TASKS.forEach((t, i) => {
    assertHelp(`deno task ${t}`, results[2 * i], /usage/i);
    assertUsageError(`deno task ${t}`, results[2 * i + 1]);
  });
  assert.equal(await checkoutState(), before, "--help wrote nothing into the checkout");
});

/** Every command path of the edged CLI: ["run"], ["repo", "init"], ... */
function commandPaths(cmd: Command, prefix: string[] = []): string[][] {
  return cmd.commands.flatMap((c) => {
    const path = [...prefix, c.name()];
    return [path, ...commandPaths(c, path)];
  });
}

/** Applies `fn` to `cmd` and every sub-command. */
function walk(cmd: Command, fn: (c: Command) => void): void {
  fn(cmd);
  for (const c of cmd.commands) walk(c, fn);
}

/**
 * Parses `args` with a fresh command tree in this process, as app/cli.ts
 * main() does (exitOverride), with every action replaced by one that fails
 * the test: help and usage errors must end before any action runs.
 */
async function parseInProcess(
  args: string[],
): Promise<{ exitCode: number; out: string; err: string }> {
  const program = buildProgram();
  let out = "", err = "";
  walk(program, (c) => {
    c.exitOverride().configureOutput({ writeOut: (s) => out += s, writeErr: (s) => err += s });
    c.action(() => {
      throw new Error(`edged ${args.join(" ")}: the command ran`);
    });
  });
  try {
    await program.parseAsync(args, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) return { exitCode: e.exitCode, out, err };
    throw e;
  }
  throw new Error(`edged ${args.join(" ")}: parsed without help or a usage error`);
}

Deno.test("every edged sub-command answers --help and refuses an unknown flag before doing anything", async () => {
  const paths = commandPaths(buildProgram());
  for (const want of [["run"], ["version"], ["module", "validate"], ["repo", "add"]]) {
    assert.ok(paths.some((p) => p.join(" ") === want.join(" ")), `edged ${want.join(" ")}`);
  }
  for (const p of [[], ...paths]) {
    const name = ["edged", ...p].join(" ");
    const help = await parseInProcess([...p, "--help"]);
    assert.equal(help.exitCode, 0, `${name} --help`);
    assert.match(
      help.out,
      new RegExp(`^Usage: ${name}\\b`, "m"),
      `${name} --help prints its usage`,
    );
    const bad = await parseInProcess([...p, "--no-such-flag"]);
    assert.notEqual(bad.exitCode, 0, `${name} --no-such-flag`);
    assert.match(bad.err, /error: (unknown option '--no-such-flag'|required option)/, name);
  }
});

Deno.test("the edged process exits 0 after --help and 2 after a usage error", async () => {
  const main = `${ROOT}main.ts`;
  const cases: [string[], number][] = [
    [["--help"], 0],
    [["repo", "add", "--help"], 0],
    [["run", "--no-such-flag"], 2],
    [["update", "status", "--no-such-flag"], 2],
  ];
  const results = await pool(
    2,
    cases.map(([args]) => () => run(Deno.execPath(), ["run", "--allow-all", main, ...args])),
  );
  cases.forEach(([args, code], i) => {
    const what = `edged ${args.join(" ")}`;
    if (code === 0) assertHelp(what, results[i], /^Usage: edged/m);
    else assertUsageError(what, results[i]);
  });
});

Deno.test("the scripts run by hand answer --help (exit 0) and refuse an unknown flag (exit 2)", async () => {
  const scripts: [string, string[]][] = [
    ["sh", ["scripts/tuf-conformance/run.sh"]],
    [Deno.execPath(), ["run", "--allow-all", "examples/modules/build.ts"]],
    // The conformance suite's stand-alone client entry (scripts/tuf-conformance).
    [Deno.execPath(), ["run", "--allow-all", "app/tuf_client_main.ts"]],
  ];
  for (const e of Deno.readDirSync(`${ROOT}examples/modules`)) {
    if (e.isDirectory && e.name !== "node_modules") {
      scripts.push(["sh", [`examples/modules/${e.name}/build.sh`]]);
    }
  }
  const before = await checkoutState();
  const wasm = await Promise.all(
    scripts.filter(([, a]) => a[0].endsWith("build.sh")).map(([, a]) =>
      Deno.stat(`${ROOT}${a[0].replace("build.sh", "module.wasm")}`).then((s) => s.mtime)
    ),
  );
  for (const [cmd, args] of scripts) {
    assertHelp(args.join(" "), await run(cmd, [...args, "--help"]), /usage/i);
    assertUsageError(args.join(" "), await run(cmd, [...args, "--no-such-flag"]));
  }
  assert.equal(await checkoutState(), before);
  const after = await Promise.all(
    scripts.filter(([, a]) => a[0].endsWith("build.sh")).map(([, a]) =>
      Deno.stat(`${ROOT}${a[0].replace("build.sh", "module.wasm")}`).then((s) => s.mtime)
    ),
  );
  assert.deepEqual(after, wasm, "--help built no module");
});
