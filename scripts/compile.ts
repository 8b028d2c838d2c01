/**
 * `deno task compile`: cross-builds the single binary for every target
 * (`dist/edged-<triple>`) with the runtime's permissions and V8 flags baked
 * in, then writes `dist/SHA256SUMS`.
 *
 * `deno compile` needs Deno's runtime (`denort`) for each target, which it
 * downloads from Deno's own host. Where that host is unreachable, point
 * `DENORT_BIN` (any target) or `DENORT_BIN_<ARCH>` (e.g. `DENORT_BIN_AARCH64`)
 * at a denort binary of the same Deno version; without one the build stops
 * and says so. It never writes a fake binary.
 *
 * Usage: `deno task compile [--target TRIPLE]... [--out DIR]`
 *
 * @module
 */
import { sha256File } from "../lib/mod.ts";
import { Command, parseCli } from "./_cli.ts";
import { runFlags, TARGETS } from "./_flags.ts";
import { EMBED_DIR, npmCacheDist, ORT_FILES } from "../sandbox/nn/mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/**
 * Modules loaded at run time that must be embedded (resolved relative to the
 * repo): the entry points of the sandbox Workers, of the inference engine's
 * Worker and of the store's checkpointer Worker, which `deno compile` does
 * not find by itself.
 */
export const INCLUDE: readonly string[] = [
  "sandbox/worker.ts",
  "sandbox/nn/engine_worker.ts",
  "runtime/checkpoint_worker.ts",
];

/** The inference engine's two files as staged for embedding (see {@link stageEngineFiles}). */
export const ENGINE_FILES: readonly string[] = [ORT_FILES.bundle, ORT_FILES.wasm].map((f) =>
  decodeURIComponent(new URL(f, EMBED_DIR).pathname)
);

/**
 * Copies onnxruntime-web's two files (the pinned version, from Deno's npm
 * cache) into `sandbox/nn/engine/`, where the engine looks first and from
 * where `--include` embeds them: only these two, not the 165 MB package.
 * @returns the bytes they add to the binary.
 */
export async function stageEngineFiles(): Promise<number> {
  // Always from the pinned package, so a version bump never embeds stale copies.
  const dist = await npmCacheDist();
  await Deno.mkdir(decodeURIComponent(EMBED_DIR.pathname), { recursive: true });
  await Deno.copyFile(`${dist}/${ORT_FILES.bundle}`, ENGINE_FILES[0]);
  await Deno.copyFile(`${dist}/${ORT_FILES.wasm}`, ENGINE_FILES[1]);
  let bytes = 0;
  for (const f of ENGINE_FILES) bytes += (await Deno.stat(f)).size;
  return bytes;
}

/** Thrown when a target cannot be built here. */
export class CompileError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "CompileError";
  }
}

/** The `deno compile` arguments for one target. */
export function compileArgs(target: string, output: string): string[] {
  return [
    "compile",
    "--quiet",
    "--no-check",
    "--target",
    target,
    "--output",
    output,
    ...runFlags(),
    ...INCLUDE.flatMap((f) => ["--include", `${ROOT}${f}`]),
    ...ENGINE_FILES.flatMap((f) => ["--include", f]),
    `${ROOT}main.ts`,
  ];
}

function denortFor(target: string, env: Record<string, string>): string | undefined {
  const arch = target.split("-")[0].toUpperCase();
  return env[`DENORT_BIN_${arch}`] ?? env.DENORT_BIN;
}

/** Builds `target` into `outDir`; throws {@linkcode CompileError} with the reason. */
export async function compileTarget(target: string, outDir: string): Promise<string> {
  const output = `${outDir}/edged-${target}`;
  await stageEngineFiles();
  const env: Record<string, string> = {};
  const denort = denortFor(target, Deno.env.toObject());
  if (denort) env.DENORT_BIN = denort;
  const res = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(target, output),
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(res.stderr);
  if (res.code !== 0) {
    const download = /download|dl\.deno\.land|denort|error sending request|dns error/i.test(stderr);
    throw new CompileError(
      download && !denort
        ? `cannot build ${target}: deno compile could not fetch its runtime (denort) for that target ` +
          `(no route to Deno's download host from here). Set DENORT_BIN_${
            target.split("-")[0].toUpperCase()
          } or DENORT_BIN to a denort ${Deno.version.deno} binary for ${target}.\n${stderr.trim()}`
        : `cannot build ${target}: deno compile failed:\n${stderr.trim()}`,
    );
  }
  return output;
}

if (import.meta.main) {
  const program = new Command("compile")
    .description(
      "Cross-build dist/edged-<triple> with deno compile, plus SHA256SUMS. Needs Deno's runtime " +
        "(denort) per target: downloaded from Deno's host, or DENORT_BIN / DENORT_BIN_X86_64 / " +
        "DENORT_BIN_AARCH64. Never writes a stand-in binary.",
    )
    .option(
      "--target <triple>",
      `a target to build, repeatable (default: ${TARGETS.join(", ")})`,
      (v: string, all: string[]) => [...all, v],
      [] as string[],
    )
    .option("--out <dir>", "output directory", `${ROOT}dist`);
  const stop = parseCli(program, Deno.args);
  if (stop !== null) Deno.exit(stop);
  const { target: targets, out: outDir } = program.opts<{ target: string[]; out: string }>();
  const wanted = targets.length > 0 ? targets : [...TARGETS];
  await Deno.mkdir(outDir, { recursive: true });
  const built: string[] = [];
  const failed: string[] = [];
  for (const target of wanted) {
    try {
      const out = await compileTarget(target, outDir);
      built.push(out);
      console.log(`built ${out}`);
    } catch (err) {
      failed.push(target);
      console.error(String((err as Error).message));
    }
  }
  if (built.length > 0) {
    const lines = await Promise.all(
      built.map(async (p) => `${await sha256File(p)}  ${p.slice(p.lastIndexOf("/") + 1)}`),
    );
    await Deno.writeTextFile(`${outDir}/SHA256SUMS`, lines.join("\n") + "\n");
    console.log(`wrote ${outDir}/SHA256SUMS`);
  }
  if (failed.length > 0) {
    console.error(`NOT BUILT: ${failed.join(", ")} (see above). No binary was faked.`);
    Deno.exit(1);
  }
}
