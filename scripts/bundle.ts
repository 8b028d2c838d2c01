/**
 * `deno task bundle`: edged as one flat directory of JavaScript, every npm
 * package inside it, which is what `deno task compile` embeds. Built by
 * `deno bundle` (esbuild) with code splitting, so every `import()` edged
 * defers stays a file of its own, loaded when it runs.
 *
 * A process started from the bundle loads no TypeScript (no transpiling, no
 * inline source maps held with each module's source), a few dozen files
 * instead of a few hundred modules, and, since no npm package is left to
 * resolve, runs with `--no-config`: no npm resolver at all. That is where
 * most of the difference in idle memory against a run from source comes from
 * (see `deno task bench ingest`).
 *
 * Layout: `main.js` and the shared chunks at the root, each Worker's entry
 * at its source path with `.js` (`sandbox/worker.js`); `lib/entry.ts` finds
 * those from either layout.
 *
 * Usage: `deno task bundle [--out DIR]` (default `dist/bundle`).
 *
 * @module
 */
import { Command, parseCli } from "./_cli.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/**
 * The entry points of the Workers edged starts (`lib/entry.ts`'s
 * `workerEntry`): the sandbox's, its validator's, the inference engine's and
 * the store's checkpointer's. Neither `deno bundle` nor `deno compile` finds them by
 * itself.
 */
export const WORKER_ENTRIES: readonly string[] = [
  "sandbox/worker.ts",
  "sandbox/validate_worker.ts",
  "sandbox/nn/engine_worker.ts",
  "runtime/checkpoint_worker.ts",
];

/** Where an entry's `.ts` source path lands in the bundle. */
export function bundledPath(path: string): string {
  return path.replace(/\.ts$/, ".js");
}

/** Thrown when the bundle cannot be built, or is not laid out as `lib/entry.ts` expects. */
export class BundleError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "BundleError";
  }
}

async function* files(dir: string, rel = ""): AsyncGenerator<string> {
  for await (const e of Deno.readDir(`${dir}/${rel}`)) {
    const path = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) yield* files(dir, path);
    else yield path;
  }
}

/** Whether `dir` is missing, empty, or an earlier bundle (it has a `main.js`): what may be replaced. */
async function replaceable(dir: string): Promise<boolean> {
  try {
    let empty = true;
    for await (const e of Deno.readDir(dir)) {
      if (e.name === "main.js" && e.isFile) return true;
      empty = false; // something else is there: not ours to delete, unless a bundle
    }
    return empty;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return true;
    throw e;
  }
}

/**
 * Builds the bundle into `outDir`: missing, empty, or an earlier bundle,
 * which is replaced only once the new one is complete (it is built in a
 * directory beside it, so a failed build leaves the old one as it was).
 * @returns the bundle's files (relative to `outDir`) and their total bytes.
 * @throws {BundleError} when `outDir` holds something else, `deno bundle`
 * fails, or an output file outside the root resolves a path from its own
 * location (only root chunks may, as `lib/entry.ts` and the engine's files
 * directory assume).
 */
export async function buildBundle(outDir: string): Promise<{ files: string[]; bytes: number }> {
  outDir = outDir.replace(/\/+$/, "");
  if (!(await replaceable(outDir))) {
    throw new BundleError(`${outDir} is neither empty nor a bundle (no main.js): not replacing it`);
  }
  const parent = outDir.slice(0, outDir.lastIndexOf("/")) || "/";
  await Deno.mkdir(parent, { recursive: true });
  const work = await Deno.makeTempDir({ dir: parent, prefix: ".edged-bundle-" });
  try {
    const built = await bundleInto(work);
    await Deno.remove(outDir, { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
    await Deno.rename(work, outDir);
    return built;
  } catch (err) {
    await Deno.remove(work, { recursive: true }).catch(() => {});
    throw err;
  }
}

async function bundleInto(outDir: string): Promise<{ files: string[]; bytes: number }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--code-splitting",
      "--platform",
      "deno",
      "--outdir",
      outDir,
      // An optional peer of node-opcua's global mutex that edged does not
      // install (its import() fails under deno run just the same).
      "--external",
      "proper-lockfile",
      ...["main.ts", ...WORKER_ENTRIES].map((f) => `${ROOT}${f}`),
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new BundleError(`deno bundle failed:\n${new TextDecoder().decode(out.stderr).trim()}`);
  }
  const names: string[] = [];
  let bytes = 0;
  for await (const f of files(outDir)) {
    names.push(f);
    const text = await Deno.readTextFile(`${outDir}/${f}`);
    bytes += (await Deno.stat(`${outDir}/${f}`)).size;
    if (f.includes("/") && text.includes("import.meta.url")) {
      throw new BundleError(
        `${f} resolves a path from its own location, but only the bundle's root files may`,
      );
    }
  }
  for (const f of ["main.ts", ...WORKER_ENTRIES].map(bundledPath)) {
    if (!names.includes(f)) throw new BundleError(`the bundle has no ${f}`);
  }
  return { files: names.sort(), bytes };
}

if (import.meta.main) {
  const program = new Command("bundle")
    .description(
      "Bundle edged (main.js, its Workers' entries and its deferred chunks, every npm package " +
        "inside) into one directory of JavaScript: what deno task compile embeds.",
    )
    .option("--out <dir>", "output directory (replaced)", `${ROOT}dist/bundle`);
  const stop = parseCli(program, Deno.args);
  if (stop !== null) Deno.exit(stop);
  const { out } = program.opts<{ out: string }>();
  try {
    const { files, bytes } = await buildBundle(out);
    console.log(`bundled ${files.length} files, ${(bytes / 1e6).toFixed(2)} MB, into ${out}`);
  } catch (err) {
    if (!(err instanceof BundleError)) throw err;
    console.error(err.message);
    Deno.exit(1);
  }
}
