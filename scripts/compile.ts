/**
 * `deno task compile`: cross-builds the single binary for every target
 * (`dist/edged-<triple>`) from the bundle of `scripts/bundle.ts` (edged's
 * JavaScript, every npm package inside, built once for all targets), with the
 * runtime's permissions and V8 flags baked in, then writes `dist/SHA256SUMS`.
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
import { buildBundle, bundledPath, BundleError, WORKER_ENTRIES } from "./bundle.ts";
import { EMBED_DIR, npmCacheDist, ORT_FILES } from "../sandbox/nn/mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/**
 * The engine's two files in the engine directory `dir`: in a bundle, the
 * `engine/` beside its root chunks (where `sandbox/nn/ort_files.ts` looks
 * first); from source, `sandbox/nn/engine/`.
 */
export function engineFiles(dir: string): string[] {
  return [ORT_FILES.bundle, ORT_FILES.wasm].map((f) => `${dir.replace(/\/$/, "")}/${f}`);
}

/**
 * Copies onnxruntime-web's two files (the pinned version, from Deno's npm
 * cache) into the engine directory `dir` (default: the source tree's), from
 * where `--include` embeds them: only these two, not the 165 MB package.
 * @returns the bytes they add to the binary.
 */
export async function stageEngineFiles(
  dir: string = decodeURIComponent(EMBED_DIR.pathname),
): Promise<number> {
  // Always from the pinned package, so a version bump never embeds stale copies.
  const dist = await npmCacheDist();
  await Deno.mkdir(dir, { recursive: true });
  const [bundle, wasm] = engineFiles(dir);
  await Deno.copyFile(`${dist}/${ORT_FILES.bundle}`, bundle);
  await Deno.copyFile(`${dist}/${ORT_FILES.wasm}`, wasm);
  let bytes = 0;
  for (const f of [bundle, wasm]) bytes += (await Deno.stat(f)).size;
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

/**
 * The `deno compile` arguments for one target, from the bundle in
 * `bundleDir` (its engine files staged): `--no-config`, since the bundle
 * holds every package and resolves nothing through deno.json.
 */
export function compileArgs(target: string, output: string, bundleDir: string): string[] {
  return [
    "compile",
    "--quiet",
    "--no-check",
    "--no-config",
    "--target",
    target,
    "--output",
    output,
    ...runFlags(),
    ...WORKER_ENTRIES.flatMap((f) => ["--include", `${bundleDir}/${bundledPath(f)}`]),
    ...engineFiles(`${bundleDir}/engine`).flatMap((f) => ["--include", f]),
    `${bundleDir}/main.js`,
  ];
}

/** Builds the bundle into `dir` and stages the engine's files in it, ready for `deno compile`. */
export async function prepareBundle(dir: string): Promise<void> {
  await buildBundle(dir);
  await stageEngineFiles(`${dir}/engine`);
}

function denortFor(target: string, env: Record<string, string>): string | undefined {
  const arch = target.split("-")[0].toUpperCase();
  return env[`DENORT_BIN_${arch}`] ?? env.DENORT_BIN;
}

/**
 * Builds `target` into `outDir` from the bundle prepared in `bundleDir`
 * ({@linkcode prepareBundle}; by default one made for this build alone, in a
 * temporary directory); throws {@linkcode CompileError} with the reason.
 */
export async function compileTarget(
  target: string,
  outDir: string,
  bundleDir?: string,
): Promise<string> {
  if (bundleDir === undefined) {
    const dir = await Deno.makeTempDir({ prefix: "edged-bundle-" });
    try {
      await prepareBundle(dir);
      return await compileTarget(target, outDir, dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  const output = `${outDir}/edged-${target}`;
  const env: Record<string, string> = {};
  const denort = denortFor(target, Deno.env.toObject());
  if (denort) env.DENORT_BIN = denort;
  const res = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(target, output, bundleDir),
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
  // One bundle for every target: it is JavaScript, the same on each.
  const bundleDir = await Deno.makeTempDir({ prefix: "edged-bundle-" });
  try {
    let bundled = true;
    try {
      await prepareBundle(bundleDir);
    } catch (err) {
      if (!(err instanceof BundleError)) throw err;
      console.error(err.message);
      failed.push(...wanted);
      bundled = false;
    }
    for (const target of bundled ? wanted : []) {
      try {
        const out = await compileTarget(target, outDir, bundleDir);
        built.push(out);
        console.log(`built ${out}`);
      } catch (err) {
        failed.push(target);
        console.error(String((err as Error).message));
      }
    }
  } finally {
    await Deno.remove(bundleDir, { recursive: true });
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
