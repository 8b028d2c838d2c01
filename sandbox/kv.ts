/**
 * Per-module persistent key-value state in SQLite, behind the `kv_get` and
 * `kv_set` host functions. It lives in the runtime's store, so it survives
 * module swaps and process restarts; usage is keys plus values in bytes.
 *
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";

/** The part of the runtime's Store the sandbox needs. */
export interface StoreLike {
  /** The SQLite database (WAL mode). */
  db: DatabaseSync;
  /** Applies `migrations` for `component` once each, in order. */
  migrate(component: string, migrations: string[]): void;
}

/** Migrations of the `kv` component. */
export const KV_MIGRATIONS = [
  `CREATE TABLE module_kv (
     module TEXT NOT NULL,
     key BLOB NOT NULL,
     value BLOB NOT NULL,
     PRIMARY KEY (module, key)
   ) WITHOUT ROWID`,
];

/** Longest key `kv_set` accepts, in bytes. */
export const MAX_KEY_BYTES = 256;

/** Key-value storage for modules. */
export interface KvStore {
  get(module: string, key: Uint8Array): Uint8Array | undefined;
  /** Stores `value`; "quota" when the module's usage would pass `maxBytes`. */
  set(module: string, key: Uint8Array, value: Uint8Array, maxBytes: number): "ok" | "quota";
  /** Bytes (keys plus values) the module uses. */
  usage(module: string): number;
  /** Deletes every key of the module. */
  clear(module: string): void;
}

/** A {@link KvStore} on SQLite; usage is cached per module. */
export class SqliteKv implements KvStore {
  #get: StatementSync;
  #put: StatementSync;
  #len: StatementSync;
  #usage: StatementSync;
  #clear: StatementSync;
  #cache = new Map<string, number>();

  constructor(store: StoreLike) {
    store.migrate("kv", KV_MIGRATIONS);
    const db = store.db;
    this.#get = db.prepare("SELECT value FROM module_kv WHERE module = ? AND key = ?");
    this.#put = db.prepare(
      "INSERT INTO module_kv (module, key, value) VALUES (?, ?, ?) " +
        "ON CONFLICT (module, key) DO UPDATE SET value = excluded.value",
    );
    this.#len = db.prepare("SELECT length(value) AS n FROM module_kv WHERE module = ? AND key = ?");
    this.#usage = db.prepare(
      "SELECT coalesce(sum(length(key) + length(value)), 0) AS n FROM module_kv WHERE module = ?",
    );
    this.#clear = db.prepare("DELETE FROM module_kv WHERE module = ?");
  }

  get(module: string, key: Uint8Array): Uint8Array | undefined {
    const row = this.#get.get(module, key) as { value: Uint8Array } | undefined;
    return row?.value;
  }

  set(module: string, key: Uint8Array, value: Uint8Array, maxBytes: number): "ok" | "quota" {
    const old = this.#len.get(module, key) as { n: number } | undefined;
    const used = this.usage(module);
    const next = used - (old ? key.length + old.n : 0) + key.length + value.length;
    if (next > maxBytes) return "quota";
    this.#put.run(module, key, value);
    this.#cache.set(module, next);
    return "ok";
  }

  usage(module: string): number {
    let n = this.#cache.get(module);
    if (n === undefined) {
      n = (this.#usage.get(module) as { n: number }).n;
      this.#cache.set(module, n);
    }
    return n;
  }

  clear(module: string): void {
    this.#clear.run(module);
    this.#cache.delete(module);
  }
}
