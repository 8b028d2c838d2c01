/**
 * The durable store: one SQLite database (`node:sqlite`, built into Deno, no
 * native addon) in WAL mode inside the data directory. Components own their
 * tables through versioned migrations.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { EdgedError, isNoSpace } from "../lib/mod.ts";
import { Checkpointer } from "./checkpoint.ts";
import { FileSyncer, GroupCommit } from "./commit.ts";

/** Bytes the WAL file is truncated to when SQLite restarts it (it grows back as needed). */
const WAL_SIZE_LIMIT = 64 * 1024 * 1024;

/** Thrown when the database cannot be opened or migrated. */
export class StoreError extends EdgedError {
  override readonly code = "store_error";
  override readonly status = 500;
}

/** Options for {@linkcode Store.open}. */
export interface StoreOptions {
  /** File name inside the data directory. @default {"edged.db"} */
  fileName?: string;
  /** Milliseconds a writer waits on a lock held by another connection. @default {5000} */
  busyTimeoutMs?: number;
  /** WAL syncs that may run at once (see {@linkcode FileSyncer}). @default {4} */
  parallelSyncs?: number;
}

/**
 * One SQLite database with WAL journaling and `synchronous=FULL`, so a
 * committed transaction has been fsync'd to the write-ahead log before
 * `COMMIT` returns: that is what every acknowledgement relies on.
 *
 * @example
 * ```ts
 * const store = Store.open(await Deno.makeTempDir());
 * store.migrate("example", ["CREATE TABLE example (k TEXT PRIMARY KEY, v TEXT)"]);
 * store.close();
 * ```
 */
export class Store {
  /** The connection, for components' own prepared statements. */
  readonly db: DatabaseSync;
  /** Path of the database file. */
  readonly path: string;
  #busyTimeoutMs: number;
  #extra: DatabaseSync[] = [];
  #syncer: FileSyncer;
  #commits: GroupCommit | undefined;
  #checkpointer: Checkpointer;

  private constructor(db: DatabaseSync, path: string, busyTimeoutMs: number, parallel: number) {
    this.db = db;
    this.path = path;
    this.#busyTimeoutMs = busyTimeoutMs;
    // The -wal file lives as long as a connection is open, so its descriptors
    // serve for the life of the store.
    this.#syncer = new FileSyncer(path + "-wal", parallel);
    this.#checkpointer = new Checkpointer(path);
  }

  /** WAL syncs done so far. */
  get syncs(): number {
    return this.#syncer.syncs;
  }

  /** Checkpoints the checkpointer Worker has run (see `checkpoint.ts`). */
  get checkpoints(): number {
    return this.#checkpointer.checkpoints;
  }

  /**
   * The store's group committer (created on first use, on its own
   * deferred-sync connection): every durable write of the hot paths goes
   * through it, one transaction and one WAL sync per event-loop turn.
   */
  get commits(): GroupCommit {
    this.#commits ??= new GroupCommit({
      db: this.openDeferredSyncConnection(),
      syncer: { sync: () => this.syncWal() },
      onCommit: () => this.#checkpointer.committed(),
    });
    return this.#commits;
  }

  /** Opens (creating if needed) the database in `dataDir`. */
  static open(dataDir: string, options: StoreOptions = {}): Store {
    const { fileName = "edged.db", busyTimeoutMs = 5000, parallelSyncs = 4 } = options;
    const path = `${dataDir}/${fileName}`;
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
      db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs | 0}`);
      const mode = db.prepare("PRAGMA journal_mode = WAL").get() as { journal_mode: string };
      if (mode.journal_mode !== "wal") {
        throw new StoreError(`could not switch ${path} to WAL mode (got ${mode.journal_mode})`);
      }
      db.exec("PRAGMA synchronous = FULL");
      // Checkpoints run on a Worker (checkpoint.ts), not inside a COMMIT on this thread.
      db.exec("PRAGMA wal_autocheckpoint = 0");
      db.exec(`PRAGMA journal_size_limit = ${WAL_SIZE_LIMIT}`);
      db.exec("PRAGMA foreign_keys = ON");
      db.exec(
        "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
      );
      const check = db.prepare("PRAGMA quick_check").get() as { quick_check: string };
      if (check.quick_check !== "ok") {
        throw new StoreError(`database ${path} failed its integrity check: ${check.quick_check}`);
      }
    } catch (err) {
      if (err instanceof StoreError) throw err;
      // SQLite says "disk I/O error" when it cannot make its shared-memory file on a full disk.
      const why = noSpaceIn(dataDir)
        ? "the disk of its directory is full: free space there and start again"
        : (err as Error).message;
      throw new StoreError(`cannot open database ${path}: ${why}`, { cause: err });
    }
    return new Store(db, path, busyTimeoutMs, parallelSyncs);
  }

  /**
   * Applies the migrations of `component` that have not run yet, each in its
   * own transaction together with the version bump, so a crash leaves the
   * schema at a known version.
   */
  migrate(component: string, migrations: readonly string[]): void {
    const row = this.db.prepare("SELECT version FROM schema_version WHERE component = ?")
      .get(component) as { version: number } | undefined;
    const current = row?.version ?? 0;
    if (current > migrations.length) {
      throw new StoreError(
        `schema of '${component}' is at version ${current}, newer than this edged knows (${migrations.length}); refusing to downgrade`,
      );
    }
    const bump = this.db.prepare(
      "INSERT INTO schema_version (component, version) VALUES (?, ?) ON CONFLICT(component) DO UPDATE SET version = excluded.version",
    );
    for (let v = current; v < migrations.length; v++) {
      this.transaction(() => {
        this.db.exec(migrations[v]);
        bump.run(component, v + 1);
      });
    }
  }

  /** Runs `fn` in one transaction on `db` (default: the main connection), rolled back if it throws. */
  transaction<T>(fn: () => T, db: DatabaseSync = this.db): T {
    db.exec("BEGIN IMMEDIATE");
    try {
      const result = fn();
      db.exec("COMMIT");
      return result;
    } catch (err) {
      if (db.isTransaction) db.exec("ROLLBACK");
      throw err;
    }
  }

  /**
   * Opens another connection to the same database with `synchronous=NORMAL`:
   * its commits append to the WAL without an fsync, so they never block the
   * event loop on the disk. A commit made on it is durable only once
   * {@linkcode Store.syncWal} has resolved after it. (SQLite still syncs
   * the WAL before checkpoints and when it restarts the WAL, see
   * https://sqlite.org/pragma.html#pragma_synchronous.)
   */
  openDeferredSyncConnection(): DatabaseSync {
    const db = new DatabaseSync(this.path);
    db.exec(`PRAGMA busy_timeout = ${this.#busyTimeoutMs}`);
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec("PRAGMA wal_autocheckpoint = 0");
    db.exec(`PRAGMA journal_size_limit = ${WAL_SIZE_LIMIT}`);
    this.#extra.push(db);
    return db;
  }

  /**
   * Makes every commit made so far durable: `fdatasync` of the WAL on a
   * background thread, so the event loop keeps serving while the disk works.
   * Syncs overlap (up to `parallelSyncs`); callers while that many run share
   * the next one (see {@linkcode FileSyncer}).
   */
  syncWal(): Promise<void> {
    return this.#syncer.sync();
  }

  /** Bytes on disk: the database file plus its write-ahead log. */
  sizeBytes(): number {
    let total = 0;
    for (const suffix of ["", "-wal"]) {
      try {
        total += Deno.statSync(this.path + suffix).size;
      } catch { /* the WAL may not exist */ }
    }
    return total;
  }

  /** Whether the connection is open. */
  get isOpen(): boolean {
    return this.db.isOpen;
  }

  /** Checkpoints the WAL into the database file and closes every connection. */
  close(): void {
    if (!this.db.isOpen) return;
    this.#checkpointer.close();
    for (const db of this.#extra) if (db.isOpen) db.close();
    try {
      this.db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    } finally {
      this.db.close();
      this.#syncer.close();
    }
  }
}

/** Whether `dir`'s file system has no room for a 64 KiB file (written, then removed). */
function noSpaceIn(dir: string): boolean {
  const probe = `${dir}/.edged-space-probe`;
  try {
    Deno.writeFileSync(probe, new Uint8Array(65536));
    return false;
  } catch (err) {
    return isNoSpace(err);
  } finally {
    try {
      Deno.removeSync(probe);
    } catch { /* never made */ }
  }
}
