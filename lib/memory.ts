/**
 * The memory of the device edged runs on, as the kernel will hold edged to
 * it: the physical memory, or the memory limit of edged's control group when
 * that is lower (a container's `--memory`, systemd's `MemoryMax=`).
 *
 * @module
 */

/** Where {@linkcode deviceMemoryBytes} looks (tests give their own). */
export interface MemorySources {
  /** Physical memory in bytes. @default {Deno.systemMemoryInfo().total} */
  total?: () => number;
  /** Reads a file of /proc or /sys. @default {Deno.readTextFileSync} */
  readFile?: (path: string) => string;
}

/** Limits at or above this (cgroup v1 writes 2^63 rounded to a page for none) are no limit. */
const NO_LIMIT = 2 ** 62;

/** Bytes of memory this process may use at most, or undefined when unknown. */
export function deviceMemoryBytes(sources: MemorySources = {}): number | undefined {
  const readFile = sources.readFile ?? ((path: string) => Deno.readTextFileSync(path));
  let total: number | undefined;
  try {
    total = (sources.total ?? (() => Deno.systemMemoryInfo().total))() || undefined;
  } catch { /* no --allow-sys, or no such interface here */ }
  const limit = cgroupMemoryLimit(readFile);
  return limit !== undefined && (total === undefined || limit < total) ? limit : total;
}

/**
 * The lowest memory limit on this process's control group or its ancestors
 * (cgroup v2 `memory.max`, or v1 `memory.limit_in_bytes`), or undefined.
 */
function cgroupMemoryLimit(readFile: (path: string) => string): number | undefined {
  let own: string;
  try {
    own = readFile("/proc/self/cgroup");
  } catch {
    return undefined;
  }
  // One line per hierarchy: "0::/system.slice/edged.service" (v2), "4:memory:/docker/..." (v1).
  const places: { path: string; file: (dir: string) => string }[] = [];
  for (const line of own.split("\n")) {
    const [id, controllers, path] = line.split(/:(.*?):/);
    if (path === undefined) continue;
    if (id === "0" && controllers === "") {
      places.push({ path, file: (d) => `/sys/fs/cgroup${d}/memory.max` });
    } else if (controllers.split(",").includes("memory")) {
      places.push({ path, file: (d) => `/sys/fs/cgroup/memory${d}/memory.limit_in_bytes` });
    }
  }
  let lowest: number | undefined;
  for (const { path, file } of places) {
    // A limit on an ancestor holds too.
    for (let dir = path.replace(/\/+$/, "");; dir = dir.slice(0, dir.lastIndexOf("/"))) {
      let n = NaN;
      try {
        n = Number(readFile(file(dir)).trim()); // "max" is NaN
      } catch { /* not there (the root has none), or not readable */ }
      if (
        Number.isSafeInteger(n) && n > 0 && n < NO_LIMIT && (lowest === undefined || n < lowest)
      ) {
        lowest = n;
      }
      if (dir === "") break;
    }
  }
  return lowest;
}
