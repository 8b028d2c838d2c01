/**
 * Per-module persistent key-value state in SQLite, behind the `kv_get` and
 * `kv_set` host functions. It lives in the runtime's store, so it survives
 * module swaps and process restarts; usage is keys plus values in bytes.
 *
 * A guest's `kv_set` is not written here when it is called: its Worker keeps
 * the call's writes (`worker.ts`) and hands them back with the call's outcome;
 * the module host then writes them in the group transaction that also
 * commits the call's published messages and the module's cursor
 * (`effects.ts`), one transaction and one WAL sync for many messages of many
 * modules, off the event loop. Between the outcome and that transaction the
 * writes wait in an overlay here, so `kv_get` always answers the newest value.
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

/** Key-value storage as the host functions see it. */
export interface KvStore {
  get(module: string, key: Uint8Array): Uint8Array | undefined;
  /**
   * {@link KvStore.get} by range in the guest's memory `mem` (checked by the
   * caller): copies the value of the key at [kp, kp+kl) to `op` when it fits
   * in `oc` bytes and returns its length (-1: no such key). `kv_get` uses it
   * where a store has it: no views and no copy of the store's own per call.
   */
  readAt?(
    module: string,
    mem: Uint8Array,
    kp: number,
    kl: number,
    op: number,
    oc: number,
  ): number;
  /**
   * Stores `value`; "quota" when the module's usage would pass `maxBytes`.
   * `key` and `value` may be views of the guest's memory, valid only during
   * the call: a store copies what it keeps.
   */
  set(module: string, key: Uint8Array, value: Uint8Array, maxBytes: number): "ok" | "quota";
  /** {@link KvStore.set} by range in the guest's memory (checked by the caller), where a store has it. */
  setAt?(
    module: string,
    mem: Uint8Array,
    kp: number,
    kl: number,
    vp: number,
    vl: number,
    maxBytes: number,
  ): "ok" | "quota";
  /** Bytes (keys plus values) the module uses. */
  usage(module: string): number;
  /** Deletes every key of the module. */
  clear(module: string): void;
}

/** One `kv_set` a call made (the last value per key). */
export interface KvWrite {
  key: Uint8Array;
  value: Uint8Array;
}

/** A key as a map key (one char per byte). */
export function keyString(key: Uint8Array): string {
  return keyStringAt(key, 0, key.length);
}

/** {@link keyString} of bytes [at, at+n) of `bytes`. */
export function keyStringAt(bytes: Uint8Array, at: number, n: number): string {
  if (n > 16) {
    return String.fromCharCode.apply(null, bytes.subarray(at, at + n) as unknown as number[]);
  }
  let s = "";
  for (let i = at; i < at + n; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

/**
 * The modules' kv on SQLite, as the runtime's thread keeps it: committed
 * rows, the overlay of writes waiting for their group transaction, and each
 * module's usage.
 */
export class SqliteKv {
  #get: StatementSync;
  #usage: StatementSync;
  #clear: StatementSync;
  #putW: StatementSync;
  #lenW: StatementSync;
  #usageW: StatementSync;
  /** Committed usage per module (as of the last group transaction). */
  #cache = new Map<string, number>();
  #overlay = new Map<string, Map<string, Uint8Array>>();
  /** Modules whose usage changed in the transaction being built. */
  #touched = new Set<string>();

  /** Opens the table in `store`; `writer` is the group commit's connection. */
  constructor(store: StoreLike, writer: DatabaseSync) {
    store.migrate("kv", KV_MIGRATIONS);
    const db = store.db;
    this.#get = db.prepare("SELECT value FROM module_kv WHERE module = ? AND key = ?");
    this.#usage = db.prepare(
      "SELECT coalesce(sum(length(key) + length(value)), 0) AS n FROM module_kv WHERE module = ?",
    );
    this.#clear = db.prepare("DELETE FROM module_kv WHERE module = ?");
    this.#putW = writer.prepare(
      "INSERT INTO module_kv (module, key, value) VALUES (?, ?, ?) " +
        "ON CONFLICT (module, key) DO UPDATE SET value = excluded.value",
    );
    this.#lenW = writer.prepare(
      "SELECT length(value) AS n FROM module_kv WHERE module = ? AND key = ?",
    );
    this.#usageW = writer.prepare(
      "SELECT coalesce(sum(length(key) + length(value)), 0) AS n FROM module_kv WHERE module = ?",
    );
  }

  /** The newest value of `key`: a staged write, else the committed row. */
  get(module: string, key: Uint8Array): Uint8Array | undefined {
    const staged = this.#overlay.get(module)?.get(keyString(key));
    if (staged !== undefined) return staged;
    const row = this.#get.get(module, key) as { value: Uint8Array } | undefined;
    return row?.value;
  }

  /** Committed bytes (keys plus values) the module uses. */
  usage(module: string): number {
    let n = this.#cache.get(module);
    if (n === undefined) {
      n = (this.#usage.get(module) as { n: number }).n;
      this.#cache.set(module, n);
    }
    return n;
  }

  /** Puts a call's writes in the overlay until their transaction ({@link SqliteKv.release}). */
  stage(module: string, writes: KvWrite[]): void {
    let m = this.#overlay.get(module);
    if (!m) this.#overlay.set(module, m = new Map());
    for (const w of writes) m.set(keyString(w.key), w.value);
  }

  /** Takes writes out of the overlay (they are committed, or were given up), unless overwritten since. */
  release(module: string, writes: KvWrite[]): void {
    const m = this.#overlay.get(module);
    if (!m) return;
    for (const w of writes) {
      const k = keyString(w.key);
      if (m.get(k) === w.value) m.delete(k);
    }
    if (m.size === 0) this.#overlay.delete(module);
  }

  /** Forgets every staged write of `module`. */
  dropStaged(module: string): void {
    this.#overlay.delete(module);
  }

  /**
   * Writes a call's writes inside the group transaction, all of them or, when
   * they would take the module past `maxBytes` (or one value past
   * `maxValueBytes`), none (the Worker enforced both already; this is the
   * check the runtime's thread makes itself).
   * Returns whether they were written.
   */
  writeIn(module: string, writes: KvWrite[], maxBytes: number, maxValueBytes = Infinity): boolean {
    let used = this.#cache.get(module) ?? (this.#usageW.get(module) as { n: number }).n;
    for (const w of writes) {
      if (w.value.length > maxValueBytes) return false;
      const old = this.#lenW.get(module, w.key) as { n: number } | undefined;
      used += (old ? -(w.key.length + old.n) : 0) + w.key.length + w.value.length;
    }
    if (used > maxBytes) return false;
    for (const w of writes) this.#putW.run(module, w.key, w.value);
    this.#cache.set(module, used);
    this.#touched.add(module);
    return true;
  }

  /** The transaction is built: its usage figures stand. */
  sealed(): void {
    this.#touched.clear();
  }

  /** The transaction was rolled back: usage figures of the modules it touched are recounted. */
  undo(): void {
    for (const m of this.#touched) this.#cache.delete(m);
    this.#touched.clear();
  }

  /** Deletes every key of the module, committed and staged. */
  clear(module: string): void {
    this.#clear.run(module);
    this.#cache.delete(module);
    this.#overlay.delete(module);
  }
}
