/**
 * `edged run` with only its own flags skips commander (app/main.ts,
 * `plainRunFlags`): whatever that fast path accepts, commander must read the
 * same way, and everything else (help, usage errors, other commands) must be
 * left to commander.
 */
import assert from "node:assert/strict";
import { buildProgram, plainRunFlags } from "../../app/mod.ts";

/** The flags commander hands `run`'s action for `args` (undefined when it runs no `run`). */
async function commanderRunFlags(args: string[]): Promise<Record<string, unknown> | undefined> {
  const program = buildProgram();
  let seen: Record<string, unknown> | undefined;
  program.commands.find((c) => c.name() === "run")!.action((opts) => {
    seen = { ...opts };
  });
  for (const c of [program, ...program.commands]) {
    c.exitOverride();
    c.configureOutput({ writeOut: () => {}, writeErr: () => {} });
  }
  try {
    await program.parseAsync(args, { from: "user" });
  } catch {
    return undefined;
  }
  return seen;
}

Deno.test("the fast path reads edged run's flags as commander does", async () => {
  const cases = [
    [],
    ["run"],
    ["run", "--data-dir", "/tmp/d", "--listen", "127.0.0.1:0"],
    ["--data-dir", "/tmp/d"],
    ["run", "--config=edged.toml", "--supervise", "--data-dir=/var/lib/edged"],
    ["run", "--listen", "[::1]:8080", "--listen", "127.0.0.1:9"],
    ["--supervise", "--config", "a b.toml"],
  ];
  for (const args of cases) {
    const fast = plainRunFlags(args);
    assert.ok(fast, `the fast path takes ${JSON.stringify(args)}`);
    assert.deepEqual(fast, await commanderRunFlags(args), JSON.stringify(args));
  }
});

Deno.test("anything else is left to commander", () => {
  const cases = [
    ["--help"],
    ["run", "--help"],
    ["-h"],
    ["version"],
    ["module", "validate", "x"],
    ["run", "--no-such-flag"],
    ["run", "extra"],
    ["run", "--data-dir"],
    ["run", "--data-dir", "--listen", "x"],
    ["run", "--config="],
    ["run", "--supervise=yes"],
    ["run", "--", "--data-dir", "d"],
    ["run", "run"],
    ["--data-dir", "d", "run"],
  ];
  for (const args of cases) {
    assert.equal(plainRunFlags(args), undefined, JSON.stringify(args));
  }
});
