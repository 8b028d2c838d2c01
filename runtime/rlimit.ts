/**
 * The process's limit of open descriptors (`RLIMIT_NOFILE`). Deno has no
 * `setrlimit`, and a `deno compile`d binary does not raise the soft limit as
 * the `deno` CLI does, so under systemd's default (1024 soft, 524288 hard) a
 * few hundred clients would exhaust it. {@linkcode raiseOpenFileLimit} calls
 * libc's `getrlimit`/`setrlimit` through FFI (`Deno.dlopen`, allowed for the
 * libc paths of {@linkcode LIBC_PATHS} only; no native addon) and raises the
 * soft limit to the hard one, as any process may (POSIX setrlimit). Without
 * FFI it reads the limit from `/proc/self/limits` and leaves it as it is.
 *
 * The two symbols are `nonblocking` (each call runs on Deno's blocking thread
 * pool and returns a promise; the limit is the process's, whichever thread
 * sets it): a synchronous symbol makes Deno compile a fast-call trampoline,
 * whose compiler's code then stays resident, about 1.7 MiB of idle RSS for
 * two calls at start-up.
 *
 * @module
 */

/** Where glibc's shared object lives on Debian/Ubuntu and on Fedora-like systems (x86_64, aarch64). */
export const LIBC_PATHS: readonly string[] = [
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/usr/lib/x86_64-linux-gnu/libc.so.6",
  "/lib/aarch64-linux-gnu/libc.so.6",
  "/usr/lib/aarch64-linux-gnu/libc.so.6",
  "/lib64/libc.so.6",
  "/usr/lib64/libc.so.6",
];

/** RLIMIT_NOFILE on Linux (asm-generic/resource.h; the same on x86_64 and aarch64). */
const RLIMIT_NOFILE = 7;

/** The descriptor limits after {@linkcode raiseOpenFileLimit}. */
export interface OpenFileLimit {
  /** The soft limit in force (what `open`/`accept` run into). */
  soft: number;
  /** The hard limit (the most the soft limit may be raised to). */
  hard: number;
  /** The soft limit before, when it was raised. */
  raisedFrom?: number;
  /** Why it could not be raised, when it could not (it was below the hard limit). */
  error?: string;
}

function fromProc(): { soft: number; hard: number } | null {
  try {
    const line = Deno.readTextFileSync("/proc/self/limits").split("\n")
      .find((l) => l.startsWith("Max open files"));
    const m = line && /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(line);
    if (!m) return null;
    const n = (v: string) => (v === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(v));
    return { soft: n(m[1]), hard: n(m[2]) };
  } catch {
    return null;
  }
}

function toNumber(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

/**
 * Raises the soft `RLIMIT_NOFILE` to the hard limit (capped by
 * `/proc/sys/fs/nr_open` when the hard limit is unlimited) and returns the
 * limits in force. Never throws: what failed is in `error`.
 */
export async function raiseOpenFileLimit(): Promise<OpenFileLimit> {
  const path = LIBC_PATHS.find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  const known = fromProc() ?? { soft: 1024, hard: 1024 };
  if (!path) return { ...known, error: "no libc.so.6 at a known path" };
  let lib;
  try {
    lib = Deno.dlopen(path, {
      getrlimit: { parameters: ["i32", "buffer"], result: "i32", nonblocking: true },
      setrlimit: { parameters: ["i32", "buffer"], result: "i32", nonblocking: true },
    });
  } catch (err) {
    return { ...known, error: `cannot load ${path}: ${(err as Error).message}` };
  }
  try {
    // struct rlimit { rlim_t rlim_cur; rlim_t rlim_max; }, rlim_t is 64-bit.
    const lim = new BigUint64Array(2);
    if (await lib.symbols.getrlimit(RLIMIT_NOFILE, lim) !== 0) {
      return { ...known, error: "getrlimit failed" };
    }
    const [soft, hard] = lim;
    let target = hard;
    if (hard === 0xffffffffffffffffn) {
      // RLIM_INFINITY: the kernel refuses more than fs.nr_open.
      try {
        target = BigInt(Deno.readTextFileSync("/proc/sys/fs/nr_open").trim());
      } catch {
        target = 1048576n;
      }
    }
    if (soft >= target) return { soft: toNumber(soft), hard: toNumber(hard) };
    lim[0] = target;
    if (await lib.symbols.setrlimit(RLIMIT_NOFILE, lim) !== 0) {
      return { soft: toNumber(soft), hard: toNumber(hard), error: "setrlimit failed" };
    }
    return { soft: toNumber(target), hard: toNumber(hard), raisedFrom: toNumber(soft) };
  } finally {
    lib.close();
  }
}

/** Descriptors kept for everything but HTTP clients: the store, modules, MQTT, downloads, Deno itself. */
export const FD_RESERVE = 128;

/**
 * The connection cap that fits `limit`: `wanted`, lowered so that the HTTP
 * clients leave {@linkcode FD_RESERVE} descriptors (at least 8 connections).
 */
export function connectionsWithin(limit: OpenFileLimit, wanted: number): number {
  return Math.max(8, Math.min(wanted, limit.soft - FD_RESERVE));
}
