/**
 * The short CI form of `deno task fuzz`: every target for a few seconds
 * with a fixed seed. Any finding fails the test and prints how to replay it.
 */
import assert from "node:assert/strict";
import { DEFAULT_TARGETS, runTarget, signature, summarize } from "../../scripts/fuzz/mod.ts";

/** Seconds per target; `EDGED_PROOF_FUZZ_SECONDS` lengthens it. */
const SECONDS = Number(Deno.env.get("EDGED_PROOF_FUZZ_SECONDS") ?? 3);
const SEED = Number(Deno.env.get("EDGED_PROOF_FUZZ_SEED") ?? 20261121);

for (const name of DEFAULT_TARGETS) {
  Deno.test(`fuzz ${name}: ${SECONDS} s, seed ${SEED}, no crash, hang, memory or oracle finding`, async () => {
    // Other test files may share this process (--parallel): bound RSS growth, not RSS.
    const r = await runTarget(name, {
      seed: SEED,
      seconds: SECONDS,
      timeoutMs: 5000,
      rssBoundBytes: Deno.memoryUsage().rss + 2 * 2 ** 30,
    });
    console.log(summarize(r));
    const accepted = Object.entries(r.labels).filter(([k]) => !k.startsWith("refused")).length;
    assert.ok(r.inputs > 0, "the target ran no input");
    assert.ok(accepted > 0, "no input was accepted: the seeds are broken");
    const sigs = [...new Set(r.findings.map(signature))];
    assert.deepEqual(
      sigs,
      [],
      `${r.findings.length} findings; replay with: deno task fuzz --target ${name} --seed ${SEED} ` +
        `--seconds ${SECONDS}\n` + r.findings.slice(0, 3).map((f) =>
          `${f.message}\n${f.stack ?? ""}`
        ).join("\n"),
    );
  });
}

Deno.test("the fuzz runner detects a hang, memory past the bound, a crash and an oracle violation", async () => {
  // In a process of its own (tests/proof/_fuzz_selftest_main.ts): the RSS bound is the
  // whole process's, which the test files beside this one would grow too.
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "--v8-flags=--expose-gc",
      new URL("./_fuzz_selftest_main.ts", import.meta.url).pathname,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(180_000),
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  assert.deepEqual(
    new TextDecoder().decode(out.stdout).trim().split("\n"),
    ["2 crash", "3 oracle", "4 hang", "6 memory"],
    stderr,
  );
});

Deno.test({
  name: "fuzzed ingest over HTTP against a real edged: 202, or 400/413 with the error shape",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { httpIngestPass } = await import("../../scripts/fuzz/http.ts");
    const r = await httpIngestPass(200, SEED);
    console.log(`${r.requests} requests, statuses ${JSON.stringify(r.statuses)}`);
    assert.deepEqual(r.problems, []);
  },
});

Deno.test({
  name: "fuzzed commands over MQTT against a real edged: each answered once, never 'internal'",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { mqttLivePass } = await import("../../scripts/fuzz/mqtt_live.ts");
    const r = await mqttLivePass(150, SEED);
    console.log(`${r.requests} requests, ${r.answered} answers, codes ${JSON.stringify(r.codes)}`);
    assert.deepEqual(r.problems, []);
  },
});
