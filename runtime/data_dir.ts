/**
 * The data directory is edged's alone: readings, kv state, the outbox, the
 * API token and the update slots are no business of other local users. At
 * start the directory is made 0700 and everything in it loses its group and
 * other bits (files keep the owner's, so slot binaries stay executable), and
 * the process creates whatever comes later with umask 077.
 *
 * @module
 */
import { setUmask } from "../lib/mod.ts";

/** Most entries looked at (the directory holds a store, modules, models and two slots). */
const MAX_ENTRIES = 100_000;

/**
 * Restricts `dir` and everything below it to the owner; symbolic links are
 * left alone (their targets are not ours to change). Returns the paths whose
 * mode was narrowed.
 */
export async function secureDataDir(dir: string): Promise<string[]> {
  const narrowed: string[] = [];
  let seen = 0;
  const visit = async (path: string, isDir: boolean) => {
    if (++seen > MAX_ENTRIES) return;
    const { mode } = await Deno.lstat(path);
    const perm = (mode ?? 0) & 0o777;
    const want = isDir ? 0o700 : perm & 0o700;
    if (perm !== want && (isDir || (perm & 0o077) !== 0)) {
      await Deno.chmod(path, want);
      narrowed.push(path);
    }
    if (!isDir) return;
    for await (const e of Deno.readDir(path)) {
      if (e.isSymlink) continue;
      if (e.isDirectory || e.isFile) await visit(`${path}/${e.name}`, e.isDirectory);
    }
  };
  await visit(dir, true);
  return narrowed;
}

/** Makes files and directories created from now on private to the owner (umask 077). */
export function privateUmask(): void {
  setUmask(0o077);
}
