/**
 * A private mount namespace for a test's process, so it can have a small
 * tmpfs (a disk that fills) without touching the machine's mounts: with a
 * user namespace of its own when the kernel allows one (no root needed),
 * else, as root, a mount namespace alone (a chroot refuses user namespaces).
 *
 * @module
 */

function works(args: string[]): boolean {
  try {
    return new Deno.Command("unshare", {
      args: [...args, "sh", "-c", "mount -t tmpfs tmpfs /tmp"],
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
  } catch {
    return false;
  }
}

/** `unshare`'s namespace flags that work here, or null when none does. */
export const UNSHARE_FLAGS: readonly string[] | null = [
  ["--user", "--map-root-user", "--mount"],
  ["--mount"],
].find(works) ?? null;

/**
 * A command prefix that runs what follows it with a `mb` MiB tmpfs mounted
 * on `dir`, seen only by it (`sh` execs the command: its pid is the
 * command's). Needs {@linkcode UNSHARE_FLAGS}.
 */
export function withTmpfs(dir: string, mb: number): string[] {
  if (!UNSHARE_FLAGS) throw new Error("no private mount namespace on this machine");
  return [
    "unshare",
    ...UNSHARE_FLAGS,
    "sh",
    "-c",
    `mount -t tmpfs -o size=${mb}m tmpfs "$0" && exec "$@"`,
    dir,
  ];
}

/**
 * `nsenter` arguments that run what follows in the namespaces of `pid` (made
 * by {@linkcode withTmpfs}), with its root and working directory: entering a
 * mount namespace otherwise starts at that namespace's root, which in a
 * chroot is not the chroot's.
 */
export function enter(pid: number): string[] {
  const user = UNSHARE_FLAGS?.includes("--user") ? ["--user"] : [];
  return [`--target=${pid}`, ...user, "--mount", "--root", "--wd"];
}
