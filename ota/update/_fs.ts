/** File helpers of the update pipeline. */
import { statfs } from "node:fs/promises";

/** Bytes available to an unprivileged writer on the file system holding `path`. */
export async function freeBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return Number(s.bavail) * Number(s.bsize);
}

/** True for the operating system's "no space left on device" (ENOSPC). */
export function isNoSpace(err: unknown): boolean {
  return (err as { code?: unknown })?.code === "ENOSPC";
}
