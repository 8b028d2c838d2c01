/** File helpers of the update pipeline: durable writes and streaming digests. */
import { dirname, join } from "node:path";
import { statfs } from "node:fs/promises";
import { toHex } from "./_hex.ts";

/**
 * Writes `data` to `path` so a crash leaves the old or the new file, never a
 * torn one: temporary file in the same directory, fsync, rename, fsync the
 * directory (the rename is only durable once the directory is).
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array,
  mode = 0o644,
): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.tmp-${crypto.randomUUID()}`);
  try {
    using file = await Deno.open(tmp, { write: true, createNew: true, mode });
    let off = 0;
    while (off < data.length) off += await file.write(data.subarray(off));
    await file.sync();
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  try {
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

/** Lower-case hex SHA-256 of a file, read in chunks. Undefined when it does not exist. */
export async function sha256File(path: string): Promise<string | undefined> {
  let data: Uint8Array<ArrayBuffer>;
  try {
    // Release binaries are tens of MiB at most: one read and WebCrypto's
    // native digest beat a streaming JS hash by far.
    data = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  return toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", data)));
}

/** Bytes available to an unprivileged writer on the file system holding `path`. */
export async function freeBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return Number(s.bavail) * Number(s.bsize);
}

/** Copies `src` to `dest` through a temporary file, fsync'd and renamed (atomic). */
export async function copyFileAtomic(src: string, dest: string, mode = 0o755): Promise<void> {
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
