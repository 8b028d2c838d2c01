/**
 * A minimal Debian 12 root to try the README in: built once with
 * `debootstrap --variant=minbase bookworm` plus Node.js, npm and git, cached
 * as a tarball outside the repository, unpacked fresh for every run.
 *
 * Safety (DEVELOPERS.md): the host's /dev is never bind-mounted (the device
 * nodes are the ones debootstrap made with mknod, carried in the tarball);
 * every mount under a root is undone before anything is copied or removed;
 * removal refuses while anything is still mounted below the directory and
 * never crosses into another file system (`rm --one-file-system`).
 *
 * @module
 */

/** Runs a host program; throws with its output's tail when it fails. */
export async function sh(
  cmd: string,
  args: string[],
  options: { log?: string; env?: Record<string, string> } = {},
): Promise<string> {
  const out = await new Deno.Command(cmd, {
    args,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (options.log) await Deno.writeTextFile(options.log, text, { append: true });
  if (!out.success) {
    const tail = text.trim().split("\n").slice(-20).join("\n");
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${out.code}):\n${tail}`);
  }
  return text;
}

/** Mount points at or below `dir` (from /proc/self/mountinfo), deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const real = await Deno.realPath(dir);
  const info = await Deno.readTextFile("/proc/self/mountinfo");
  return info.split("\n").filter(Boolean)
    // Field 5 is the mount point, with spaces and the like octal-escaped.
    .map((l) =>
      l.split(" ")[4].replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)))
    )
    .filter((m) => m === real || m.startsWith(`${real}/`))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts everything at or below `dir`, deepest first; throws if anything stays mounted. */
export async function unmountAll(dir: string): Promise<void> {
  for (let round = 0; round < 3; round++) {
    const mounts = await mountsUnder(dir);
    if (mounts.length === 0) return;
    for (const m of mounts) {
      // A lazy unmount as the last resort: the mount leaves the tree at once.
      await sh("umount", round < 2 ? [m] : ["-l", m]).catch(() => {});
    }
  }
  const left = await mountsUnder(dir);
  if (left.length > 0) throw new Error(`still mounted under ${dir}: ${left.join(", ")}`);
}

/**
 * Removes `dir` (a work directory holding a root) only when nothing is
 * mounted at or below it, and without crossing file systems.
 */
export async function removeRootDir(dir: string): Promise<void> {
  try {
    await Deno.stat(dir);
  } catch {
    return;
  }
  const mounts = await mountsUnder(dir);
  if (mounts.length > 0) {
    throw new Error(`refusing to remove ${dir}: still mounted there: ${mounts.join(", ")}`);
  }
  await sh("rm", ["-rf", "--one-file-system", "--", dir]);
}

/** Pids of processes whose root directory is `root` or below it. */
export async function processesIn(root: string): Promise<number[]> {
  const real = await Deno.realPath(root);
  const pids: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const r = await Deno.readLink(`/proc/${e.name}/root`);
      if (r === real || r.startsWith(`${real}/`)) pids.push(Number(e.name));
    } catch {
      // gone, or not ours to look at
    }
  }
  return pids;
}

/** The command line of `pid`, for reports. */
export async function commandLine(pid: number): Promise<string> {
  try {
    return (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0").join(" ").trim();
  } catch {
    return "?";
  }
}

/** Kills every process inside `root`; resolves with what was running. */
export async function killProcessesIn(root: string): Promise<string[]> {
  const seen: string[] = [];
  for (let round = 0; round < 5; round++) {
    const pids = await processesIn(root);
    if (pids.length === 0) break;
    for (const pid of pids) {
      if (round === 0) seen.push(`${pid} ${await commandLine(pid)}`);
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return seen;
}

/**
 * Mounts what programs expect inside `root`: proc, sysfs (read-only), a
 * tmpfs on /dev/shm and a private devpts instance for pseudo-terminals
 * (/dev/ptmx points into it), never anything of the host's /dev.
 */
export async function mountSystem(root: string): Promise<void> {
  // The root a private mount point of its own: inside a directory of the
  // host's file system, `unshare --mount` (the full-disk tests' tmpfs) cannot
  // make its mounts private and refuses ("cannot change root filesystem
  // propagation"), and those tests were skipped.
  await sh("mount", ["--bind", root, root]);
  await sh("mount", ["--make-private", root]);
  await sh("mount", ["-t", "proc", "proc", `${root}/proc`]);
  await sh("mount", ["-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", `${root}/sys`]);
  await Deno.mkdir(`${root}/dev/shm`, { recursive: true });
  const tmpfs = "mode=1777,nosuid,nodev,size=1g";
  await sh("mount", ["-t", "tmpfs", "-o", tmpfs, "shm", `${root}/dev/shm`]);
  await Deno.mkdir(`${root}/dev/pts`, { recursive: true });
  const pts = "newinstance,ptmxmode=0666,mode=0620,gid=5";
  await sh("mount", ["-t", "devpts", "-o", pts, "devpts", `${root}/dev/pts`]);
  await Deno.remove(`${root}/dev/ptmx`).catch(() => {});
  await Deno.symlink("pts/ptmx", `${root}/dev/ptmx`);
}

/** The device nodes a program may open, made with mknod where missing (never the host's /dev). */
const DEVICES: [string, number, number][] = [
  ["null", 1, 3],
  ["zero", 1, 5],
  ["full", 1, 7],
  ["random", 1, 8],
  ["urandom", 1, 9],
  ["tty", 5, 0],
];

/** Makes the device nodes of {@linkcode DEVICES} that `root` lacks. */
export async function makeDevices(root: string): Promise<void> {
  for (const [name, major, minor] of DEVICES) {
    const path = `${root}/dev/${name}`;
    try {
      await Deno.lstat(path);
    } catch {
      await sh("mknod", ["-m", "666", path, "c", String(major), String(minor)]);
    }
  }
}

/** Options of {@linkcode buildBase}. */
export interface BaseOptions {
  /** The tarball to write. */
  tarball: string;
  /** The Debian mirror debootstrap and apt use. */
  mirror: string;
  /** Progress lines. */
  log: (line: string) => void;
  /** Every command's output goes here. */
  logFile: string;
}

/** The environment of a fresh login shell in the root (as root). */
export const ROOT_ENV: Record<string, string> = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  HOME: "/root",
  LANG: "C.UTF-8",
};

/** Runs `script` with `sh -c` inside `root` as root. */
export function inRoot(root: string, script: string, logFile: string): Promise<string> {
  return sh("chroot", [root, "/bin/sh", "-c", script], {
    log: logFile,
    env: { ...ROOT_ENV, DEBIAN_FRONTEND: "noninteractive" },
  });
}

/**
 * Builds the base: debootstrap minbase bookworm, then `apt-get install
 * nodejs npm git` as a user would, and this host's extra CA certificates
 * (without them nothing in the root reaches npm through this network).
 */
export async function buildBase(o: BaseOptions): Promise<void> {
  const work = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "edged-fresh-base-" });
  const root = `${work}/root`;
  try {
    o.log(`debootstrap --variant=minbase bookworm (${o.mirror})`);
    await sh("debootstrap", ["--variant=minbase", "bookworm", root, o.mirror], { log: o.logFile });
    await Deno.copyFile("/etc/resolv.conf", `${root}/etc/resolv.conf`);
    await makeDevices(root);
    await mountSystem(root);
    try {
      o.log("apt-get install nodejs npm git");
      await inRoot(root, "apt-get update -q && apt-get install -y -q nodejs npm git", o.logFile);
      const extra = [...Deno.readDirSync("/usr/local/share/ca-certificates")]
        .filter((e) => e.isFile && e.name.endsWith(".crt"));
      for (const e of extra) {
        await Deno.copyFile(
          `/usr/local/share/ca-certificates/${e.name}`,
          `${root}/usr/local/share/ca-certificates/${e.name}`,
        );
      }
      o.log(`${extra.length} extra CA certificate(s) of this host, update-ca-certificates`);
      await inRoot(root, "update-ca-certificates", o.logFile);
      await inRoot(root, "apt-get clean", o.logFile);
    } finally {
      await killProcessesIn(root);
      await unmountAll(root);
    }
    const tmp = `${o.tarball}.partial`;
    await sh("tar", ["--one-file-system", "--numeric-owner", "-C", root, "-cf", tmp, "."]);
    await Deno.rename(tmp, o.tarball);
  } finally {
    await removeRootDir(work);
  }
}

/** Unpacks the base tarball into a new work directory; resolves with the work dir and root. */
export async function unpackBase(tarball: string): Promise<{ work: string; root: string }> {
  const work = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "edged-fresh-" });
  const root = `${work}/root`;
  await Deno.mkdir(root);
  await sh("tar", ["--numeric-owner", "-xpf", tarball, "-C", root]);
  await Deno.copyFile("/etc/resolv.conf", `${root}/etc/resolv.conf`);
  await makeDevices(root);
  return { work, root };
}
