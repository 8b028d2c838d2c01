/**
 * The durable store: one SQLite database (`node:sqlite`, built into Deno, no
 * native addon) in WAL mode inside the data directory. Components own their
 * tables through versioned migrations.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { EdgedError } from "../lib/mod.ts";

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
  /** WAL syncs done by {@linkcode Store.syncWal}. */
  syncs = 0;
  #busyTimeoutMs: number;
  #extra: DatabaseSync[] = [];
  #wal: Deno.FsFile | null = null;
  #syncing: Promise<void> | null = null;
  #nextSync: Promise<void> | null = null;

  private constructor(db: DatabaseSync, path: string, busyTimeoutMs: number) {
    this.db = db;
    this.path = path;
    this.#busyTimeoutMs = busyTimeoutMs;
  }

  /** Opens (creating if needed) the database in `dataDir`. */
  static open(dataDir: string, options: StoreOptions = {}): Store {
    const { fileName = "edged.db", busyTimeoutMs = 5000 } = options;
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
      throw new StoreError(`cannot open database ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return new Store(db, path, busyTimeoutMs);
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
    this.#extra.push(db);
    return db;
  }

  /**
   * Makes every commit made so far durable: `fdatasync` of the WAL on a
   * background thread, so the event loop keeps serving while the disk works.
   * Calls made while a sync runs share the next one (group commit): at most
   * one sync is in flight and at most one waits.
   */
  syncWal(): Promise<void> {
    if (!this.#syncing) {
      this.#syncing = this.#syncOnce().finally(() => (this.#syncing = null));
      return this.#syncing;
    }
    // The running sync may have started before the caller's commit.
    this.#nextSync ??= this.#syncing.then(() => {
      this.#nextSync = null;
      return this.syncWal();
    });
    return this.#nextSync;
  }

  async #syncOnce(): Promise<void> {
    // The -wal file lives as long as a connection is open, so one descriptor
    // serves for the life of the store.
    this.#wal ??= await Deno.open(this.path + "-wal", { read: true });
    await this.#wal.syncData();
    this.syncs++;
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
    for (const db of this.#extra) if (db.isOpen) db.close();
    try {
      this.db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    } finally {
      this.db.close();
      this.#wal?.close();
      this.#wal = null;
    }
  }
}
