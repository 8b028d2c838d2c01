/**
 * Fills a (small, test-only) file system to its last block.
 *
 * @module
 */

/** Writes `dir`/filler until the disk of `dir` is full; returns the filler's path. */
export function fillDisk(dir: string): string {
  const path = `${dir}/filler`;
  using f = Deno.openSync(path, { create: true, write: true });
  for (const size of [1 << 20, 1 << 16, 1 << 12, 512]) {
    const chunk = new Uint8Array(size);
    try {
      while (true) f.writeSync(chunk);
    } catch { /* ENOSPC (a short write already took what fitted) */ }
  }
  return path;
}
