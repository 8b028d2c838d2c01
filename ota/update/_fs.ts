/** File helpers of the update pipeline. */

/** Bytes available to an unprivileged writer on the file system holding `path`. */
export async function freeBytes(path: string): Promise<number> {
  // node:fs/promises (and the node:fs polyfill under it) loads when an update
  // needs it, not in an idle edged.
  const { statfs } = await import("node:fs/promises");
  const s = await statfs(path);
  return Number(s.bavail) * Number(s.bsize);
}
