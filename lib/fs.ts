/**
 * Durable file replacement, shared by everything that keeps state in files
 * (the API token, TUF metadata, the repository, the update state).
 *
 * @module
 */
// Not node:path: the launcher loads no node: module (lib/path.ts).
import { joinPath as join, parentDir as dirname } from "./path.ts";

/**
 * Writes `data` to `path` so that a crash or power loss leaves either the old
 * or the new file, never a torn one: a temporary file in the same directory,
 * fsync'd, renamed over `path`, then the directory fsync'd (the rename is
 * durable only once the directory is). Without `mode` the file gets what the
 * process's umask leaves of 0666 (under `edged run`, umask 077: 0600); with
 * it, exactly `mode`.
 *
 * @example
 * ```ts
 * await writeFileAtomic("/tmp/state.json", new TextEncoder().encode("{}"), { mode: 0o600 });
 * ```
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array,
  options: { mode?: number } = {},
): Promise<void> {
  const { mode } = options;
  const dir = dirname(path);
  const tmp = join(dir, `.tmp-${crypto.randomUUID()}`);
  try {
    using file = await Deno.open(tmp, { write: true, createNew: true, mode: mode ?? 0o666 });
    let off = 0;
    while (off < data.length) off += await file.write(data.subarray(off));
    await file.sync();
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  try {
    // The umask may have narrowed the mode on creation; set it exactly.
    if (mode !== undefined) await Deno.chmod(tmp, mode);
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  await syncDir(dir);
}

/** fsyncs a directory so renames and creations in it survive power loss. */
export async function syncDir(dir: string): Promise<void> {
  try {
    using d = await Deno.open(dir, { read: true });
    await d.sync();
  } catch {
    // Some file systems refuse fsync on directories; the rename is still atomic.
  }
}

/** The umask {@linkcode setUmask} set, if it was called. */
let umaskSet: number | undefined;

/**
 * Sets the process's umask and remembers it: reading it back with
 * `Deno.umask()` sets it to 0 for a moment, and a file another thread
 * creates in that moment would get 0666.
 */
export function setUmask(mask: number): void {
  Deno.umask(mask);
  umaskSet = mask;
}

/**
 * The mode of an executable this process creates: 0777 less the process's
 * umask (under `edged run`, umask 077: 0700). The umask {@linkcode setUmask}
 * set, else read (a process that never set it: one thread creates files).
 */
export function executableMode(): number {
  return 0o777 & ~(umaskSet ?? Deno.umask());
}

/**
 * Copies `src` to `dest` through a temporary file, fsync'd and renamed
 * (atomic), as an executable ({@linkcode executableMode}) unless `mode` says
 * otherwise.
 */
export async function copyFileAtomic(
  src: string,
  dest: string,
  mode = executableMode(),
): Promise<void> {
  const dir = dirname(dest);
  const tmp = join(dir, `.tmp-${crypto.randomUUID()}`);
  try {
    await Deno.copyFile(src, tmp);
    await Deno.chmod(tmp, mode);
    using f = await Deno.open(tmp, { read: true, write: true });
    await f.sync();
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  await Deno.rename(tmp, dest);
  await syncDir(dir);
}
