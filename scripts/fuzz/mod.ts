/**
 * `deno task fuzz`: seeded, time-bounded fuzzing of every parser and
 * validator that takes outside input (BSDIFF40 patches, TUF metadata of
 * every role, module bytes and manifests, ingest JSON, MQTT command
 * payloads, configuration).
 *
 * ```sh
 * deno task fuzz                                  # every target, 30 s each, seed 1
 * deno task fuzz --target tuf --seconds 600 --seed 7
 * deno task fuzz --target bspatch --replay crash.bin
 * deno task fuzz --target ingest --http 2000           # plus requests to a real edged
 * ```
 *
 * Inputs are a pure function of `(seed, index)`, so a finding is reproduced
 * by its file or by its two numbers. Findings are written to `--save-dir`;
 * copy them to `tests/proof/regressions/<target>/` to keep them as tests.
 * Exit code 1 when anything was found.
 *
 * @module
 */
import { Command, parseCli } from "../_cli.ts";
import type { Finding } from "./_protocol.ts";
import { replay, runTarget, type TargetReport } from "./_runner.ts";
import { TARGETS } from "./targets/mod.ts";
import { httpIngestPass } from "./http.ts";
import { mqttLivePass } from "./mqtt_live.ts";

export { replay, runTarget, TARGETS };

/** The targets a run without `--target` covers. */
export const DEFAULT_TARGETS: string[] = Object.keys(TARGETS).filter((n) => !n.startsWith("_"));
export type { Finding, TargetReport };

/** A short, stable name for a finding's input: target, kind and 12 hex digits of its SHA-256. */
export async function findingName(f: Finding): Promise<string> {
  const d = new Uint8Array(
    await crypto.subtle.digest("SHA-256", f.input as Uint8Array<ArrayBuffer>),
  );
  const hex = Array.from(d.subarray(0, 6), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${f.target}-${f.kind}-${hex}`;
}

/** Kind, label and innermost stack frame: findings with one signature are one bug. */
export function signature(f: Finding): string {
  const frame = f.stack?.split("\n").find((l) => l.trim().startsWith("at ")) ?? f.message;
  return `${f.target} ${f.kind} ${f.label} ${frame.trim()}`;
}

/** One line per outcome label, most frequent first. */
export function summarize(r: TargetReport): string {
  const rate = r.inputs / Math.max(r.elapsedMs / 1000, 0.001);
  const top = Object.entries(r.labels).sort((a, b) => b[1] - a[1]).slice(0, 8)
    .map(([k, v]) => `${k} ${v}`).join(", ");
  return `${r.target}: ${r.inputs} inputs in ${(r.elapsedMs / 1000).toFixed(1)} s ` +
    `(${rate.toFixed(0)}/s), ${r.findings.length} findings; ${top}`;
}

async function main(args: string[]): Promise<number> {
  const program = new Command("fuzz")
    .description("seeded, time-bounded fuzzing of edged's input parsers")
    .option("--target <names...>", `targets (${DEFAULT_TARGETS.join(", ")})`)
    .option("--seed <n>", "run seed", "1")
    .option("--seconds <n>", "seconds per target", "30")
    .option("--timeout-ms <n>", "per-input time bound", "2000")
    .option("--heap-mib <n>", "heap growth bound per target (after GC)", "128")
    .option("--rss-mib <n>", "process RSS bound", "2048")
    .option("--save-dir <dir>", "where findings are written (default: a new temp dir)")
    .option("--replay <files...>", "run these input files instead of generating")
    .option("--http <n>", "also send n fuzzed ingest requests to a real edged", "0")
    .option("--mqtt <n>", "also publish n fuzzed commands to a real edged over Mosquitto", "0");
  const stop = parseCli(program, args);
  if (stop !== null) return stop;
  const o = program.opts();
  const names: string[] = o.target ?? DEFAULT_TARGETS;
  const unknown = names.filter((n) => !TARGETS[n]);
  const nums = ["seed", "seconds", "timeoutMs", "heapMib", "rssMib"].map((k) => Number(o[k]));
  if (unknown.length > 0 || nums.some((n) => !Number.isFinite(n) || n < 0)) {
    console.error(
      unknown.length > 0
        ? `unknown target(s) ${unknown.join(", ")}; known: ${Object.keys(TARGETS).join(", ")}`
        : "--seed, --seconds, --timeout-ms, --heap-mib and --rss-mib must be non-negative numbers",
    );
    return 2;
  }
  const [seed, seconds, timeoutMs, heapMib, rssMib] = nums;
  const bounds = { timeoutMs, heapBoundBytes: heapMib * 2 ** 20, rssBoundBytes: rssMib * 2 ** 20 };
  const findings: Finding[] = [];
  if (o.replay) {
    if (names.length !== 1) {
      console.error("--replay needs exactly one --target");
      return 2;
    }
    const inputs = await Promise.all((o.replay as string[]).map((f) => Deno.readFile(f)));
    findings.push(...await replay(names[0], inputs, bounds));
    console.log(`${names[0]}: replayed ${inputs.length} input(s), ${findings.length} findings`);
  } else {
    for (const name of names) {
      const r = await runTarget(name, { seed, seconds, ...bounds });
      console.log(summarize(r));
      findings.push(...r.findings);
    }
  }
  let httpProblems = 0;
  if (Number(o.http) > 0) {
    const h = await httpIngestPass(Number(o.http), seed);
    console.log(
      `ingest over HTTP: ${h.requests} requests, statuses ${JSON.stringify(h.statuses)}, ` +
        `${h.problems.length} problems`,
    );
    for (const p of h.problems.slice(0, 20)) console.log(`  HTTP PROBLEM ${p}`);
    httpProblems = h.problems.length;
  }
  if (Number(o.mqtt) > 0) {
    const m = await mqttLivePass(Number(o.mqtt), seed);
    console.log(
      `commands over MQTT: ${m.requests} requests, ${m.answered} answers, codes ` +
        `${JSON.stringify(m.codes)}, ${m.problems.length} problems`,
    );
    for (const p of m.problems.slice(0, 20)) console.log(`  MQTT PROBLEM ${p}`);
    httpProblems += m.problems.length;
  }
  if (findings.length === 0) return httpProblems > 0 ? 1 : 0;
  const dir = o.saveDir ?? await Deno.makeTempDir({ prefix: "edged-fuzz-" });
  await Deno.mkdir(dir, { recursive: true });
  const seen = new Map<string, number>();
  for (const f of findings) {
    // Many inputs hit the same bug: keep the three smallest per signature.
    const sig = signature(f);
    seen.set(sig, (seen.get(sig) ?? 0) + 1);
  }
  const kept = [...findings].sort((a, b) => a.input.length - b.input.length).filter((f) => {
    const sig = signature(f);
    const left = seen.get(sig)!;
    if (left <= 0) return false;
    seen.set(sig, left > 3 ? 3 - 1 : left - 1);
    return true;
  });
  console.log(`${findings.length} findings, ${kept.length} kept (at most 3 per signature)`);
  for (const f of kept) {
    const name = await findingName(f);
    await Deno.writeFile(`${dir}/${name}.bin`, f.input);
    const { input: _, ...meta } = f;
    await Deno.writeTextFile(`${dir}/${name}.json`, JSON.stringify(meta, null, 2) + "\n");
    console.log(
      `FINDING ${f.kind} ${f.label} in ${f.target} (seed ${f.seed}, input ${f.index}): ` +
        `${f.message.split("\n")[0].slice(0, 300)}\n  -> ${dir}/${name}.bin`,
    );
  }
  return 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
