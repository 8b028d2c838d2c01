/** File helpers of the update pipeline: digests, free space, atomic copies. */
import { dirname, join } from "node:path";
import { syncDir } from "../../runtime/mod.ts";
import { statfs } from "node:fs/promises";
import { toHex } from "./_hex.ts";

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
