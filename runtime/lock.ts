/**
 * One edged per data directory: `edged run` holds an exclusive advisory lock
 * (flock) on `DATA_DIR/edged.lock` for as long as it runs. The kernel drops
 * the lock when the process ends, however it ends (kill -9, power loss), so
 * a lock is never stale; the pid written into the file only names the holder
 * in the error a second process prints.
 *
 * The launcher (`edged run --supervise`) must not hold this lock: its child,
 * the edged it starts, takes it. The launcher checks it is free before
 * touching the update state, and holds `DATA_DIR/edged-launcher.lock` itself,
 * so two launchers cannot count boots or roll back on one directory.
 *
 * @module
 */
// Not node:path: the launcher loads no node: module (lib/path.ts).
import { EdgedError, joinPath as join, resolvePath as resolve } from "../lib/mod.ts";

/** The lock `edged run` holds for as long as it runs. */
export const RUNTIME_LOCK = "edged.lock";
/** The lock `edged run --supervise` holds for as long as it runs. */
export const LAUNCHER_LOCK = "edged-launcher.lock";

/** Thrown when another process holds the lock: a configuration error (exit 2). */
export class DataDirLockedError extends EdgedError {
  override readonly code = "data_dir_locked";
  override readonly status = 409;
  /** Builds the error. */
  constructor(
    /** The data directory (absolute). */
    readonly dataDir: string,
    /** Pid of the holder as it wrote it, if known. */
    readonly pid: number | null,
    /** What holds it: `edged` or `an edged launcher`. */
    readonly holder: string,
  ) {
    super(
      `data directory ${dataDir} is in use by ${holder}${pid ? ` (pid ${pid})` : ""}; ` +
        `stop it first, or give this one another --data-dir`,
    );
  }
}

/** A held lock; released by {@linkcode DataDirLock.release} or by the end of the process. */
export interface DataDirLock {
  /** Path of the lock file. */
  readonly path: string;
  /** Releases the lock and closes the file. */
  release(): void;
}

/** Options of {@linkcode lockDataDir}. */
export interface LockOptions {
  /** File name inside the data directory. @default {RUNTIME_LOCK} */
  name?: string;
  /** Who holds this lock, for the error of the next one. @default {"another edged"} */
  holder?: string;
}

/**
 * Takes the exclusive lock on `dataDir` (created, mode 0700, when missing) and
 * writes this process's pid into it; throws {@linkcode DataDirLockedError} at
 * once, without waiting and without writing anything, when another process
 * holds it.
 */
export async function lockDataDir(
  dataDir: string,
  options: LockOptions = {},
): Promise<DataDirLock> {
  const held = await take(dataDir, options);
  try {
    await held.file.truncate(0);
    await held.file.write(new TextEncoder().encode(`${Deno.pid}\n`));
  } catch (err) {
    held.release();
    throw err;
  }
  return held;
}

/**
 * Throws {@linkcode DataDirLockedError} when a process holds the lock of
 * `dataDir` now; holds it no longer than the check and writes nothing into it.
 */
export async function assertUnlocked(dataDir: string, options: LockOptions = {}): Promise<void> {
  (await take(dataDir, options)).release();
}

async function take(
  dataDir: string,
  options: LockOptions,
): Promise<DataDirLock & { file: Deno.FsFile }> {
  const { name = RUNTIME_LOCK, holder = "another edged" } = options;
  const dir = resolve(dataDir);
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new Error(`cannot create data directory ${dir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const path = join(dir, name);
  // Not truncated on open: the holder's pid stays readable for the error.
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
  let locked: boolean;
  try {
    locked = await file.tryLock(true);
    if (!locked) throw new DataDirLockedError(dir, await readPid(file), holder);
  } catch (err) {
    file.close();
    throw err;
  }
  let released = false;
  return {
    path,
    file,
    release() {
      if (released) return;
      released = true;
      // Closing the last descriptor drops the lock.
      file.close();
    },
  };
}

/** The pid the holder wrote, or null while it has not (yet). */
async function readPid(file: Deno.FsFile): Promise<number | null> {
  const buf = new Uint8Array(32);
  const n = await file.read(buf);
  const m = /^(\d+)\n/.exec(new TextDecoder().decode(buf.subarray(0, n ?? 0)));
  return m ? Number(m[1]) : null;
}
