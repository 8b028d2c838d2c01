/**
 * The durable reading log with group commit. Every ingested reading gets a
 * row; a request is acknowledged only when the transaction holding its rows
 * has committed (fsync'd WAL). Requests arriving while one commit is pending
 * share the next one, so one fsync serves many requests.
 *
 * Readings also wait here for uplink: `uplinked_id` is the highest id the
 * uplink has had acknowledged; everything above it is pending and counts
 * against `maxPending`.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { EdgedError } from "../lib/mod.ts";
import type { Store } from "./store.ts";

/** One validated reading. */
export interface Reading {
  device_id: string;
  metric: string;
  value: number;
  /** UTC milliseconds since the epoch. */
  timestamp: number;
}

/** A reading as stored, with its log position. */
export interface StoredReading extends Reading {
  id: number;
}

/** Thrown when accepting more would exceed the pending cap. */
export class OutboxFullError extends EdgedError {
  override readonly code = "outbox_full";
  override readonly status = 503;
  /** Seconds after which a retry makes sense. */
  readonly retryAfter: number;
  /** Builds the error; HTTP answers carry `Retry-After: retryAfter`. */
  constructor(message: string, retryAfter: number) {
    super(message, { headers: { "Retry-After": String(retryAfter) } });
    this.retryAfter = retryAfter;
  }
}

/** Options for {@linkcode ReadingLog}. */
export interface ReadingLogOptions {
  /** Readings that may wait for uplink before ingest answers 503. @default {1000000} */
  maxPending?: number;
  /** Whether readings wait for uplink at all (MQTT forwarding). @default {true} */
  forward?: boolean;
  /** Uplinked readings kept for local inspection before pruning. @default {10000} */
  retainUplinked?: number;
  /** Called after each commit with the committed readings, in log order. */
  onCommitted?: (rows: StoredReading[]) => void;
  /** Seconds suggested in Retry-After when full. @default {5} */
  retryAfterSeconds?: number;
}

const MIGRATIONS = [
  `CREATE TABLE readings (
     id INTEGER PRIMARY KEY,
     device_id TEXT NOT NULL,
     metric TEXT NOT NULL,
     value REAL NOT NULL,
     ts_ms INTEGER NOT NULL,
     received_ms INTEGER NOT NULL
   );
   CREATE TABLE readings_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
   INSERT INTO readings_meta (key, value) VALUES ('uplinked_id', 0);`,
];

/** Rows per multi-row INSERT statement. */
const CHUNK = 100;
/** Rows that pile up past retention before an unforwarded log prunes. */
const PRUNE_SLICE = 10_000;

interface Pending {
  rows: Reading[];
  resolve: (ids: number[]) => void;
  reject: (err: unknown) => void;
}

/**
 * The reading log. `append` resolves once the rows are durable.
 *
 * @example
 * ```ts
 * import { Store } from "./store.ts";
 * const log = new ReadingLog(Store.open(await Deno.makeTempDir()));
 * await log.append([{ device_id: "pump-7", metric: "temperature", value: 71.5, timestamp: Date.now() }]);
 * ```
 */
export class ReadingLog {
  #store: Store;
  #queue: Pending[] = [];
  #queuedRows = 0;
  #scheduled = false;
  #lastId: number;
  #uplinkedId: number;
  #opts: Required<Omit<ReadingLogOptions, "onCommitted">> & Pick<ReadingLogOptions, "onCommitted">;
  #insert;
  /** The connection readings are written on: commits there wait for `syncWal`, not for fsync. */
  #db;
  #inFlight = 0;
  #setUplinked;
  #insertChunk;
  #prunedBelow = 0;
  #chunkArgs: (string | number)[] = new Array(CHUNK * 6);
  #idle: (() => void)[] = [];
  #commitListeners = new Set<(durableId: number) => void>();
  /**
   * Called when an append would take the pending readings over the cap, with
   * how many are too many; returns true when it made room (the MQTT uplink's
   * drop-oldest policy advances the cursor past the oldest). Unset: 503.
   */
  onFull?: (excess: number) => boolean;
  /** Commits so far (each one fsync). */
  commits = 0;
  /** Readings committed so far. */
  committed = 0;

  /** Opens the log in `store`, migrating its tables. */
  constructor(store: Store, options: ReadingLogOptions = {}) {
    const {
      maxPending = 1_000_000,
      forward = true,
      retainUplinked = 10_000,
      retryAfterSeconds = 5,
      onCommitted,
    } = options;
    if (!Number.isInteger(maxPending) || maxPending < 1) {
      throw new RangeError(`maxPending must be a positive integer, got ${maxPending}`);
    }
    this.#opts = { maxPending, forward, retainUplinked, retryAfterSeconds, onCommitted };
    this.#store = store;
    store.migrate("readings", MIGRATIONS);
    const db = store.openDeferredSyncConnection();
    this.#db = db;
    this.#insert = db.prepare(
      "INSERT INTO readings (id, device_id, metric, value, ts_ms, received_ms) VALUES (?, ?, ?, ?, ?, ?)",
    );
    this.#insertChunk = db.prepare(
      "INSERT INTO readings (id, device_id, metric, value, ts_ms, received_ms) VALUES " +
        Array(CHUNK).fill("(?, ?, ?, ?, ?, ?)").join(", "),
    );
    this.#setUplinked = store.db.prepare(
      "UPDATE readings_meta SET value = ? WHERE key = 'uplinked_id'",
    );
    this.#uplinkedId = (db.prepare("SELECT value FROM readings_meta WHERE key = 'uplinked_id'")
      .get() as { value: number }).value;
    const maxId = (db.prepare("SELECT coalesce(max(id), 0) AS id FROM readings").get() as {
      id: number;
    }).id;
    this.#lastId = Math.max(maxId, this.#uplinkedId);
    if (!forward) this.#uplinkedId = this.#lastId;
  }

  /** Readings durable on disk and not yet acknowledged by the uplink. */
  get pending(): number {
    return this.#opts.forward ? this.#lastId - this.#uplinkedId : 0;
  }

  /** Readings accepted but not yet committed. */
  get queued(): number {
    return this.#queuedRows;
  }

  /** Highest id the uplink has had acknowledged. */
  get uplinkedId(): number {
    return this.#uplinkedId;
  }

  /** Highest id committed. */
  get lastId(): number {
    return this.#lastId;
  }

  /**
   * Queues `rows` for the next group commit and resolves with their ids once
   * durable. Throws {@linkcode OutboxFullError} at once, storing nothing, when
   * they would take the pending readings over the cap.
   */
  append(rows: Reading[]): Promise<number[]> {
    if (!this.#store.isOpen) return Promise.reject(new Error("store is closed"));
    const over = () => this.pending + this.#queuedRows + rows.length - this.#opts.maxPending;
    if (
      this.#opts.forward && over() > 0 &&
      !(rows.length <= this.#opts.maxPending && this.onFull?.(over()) && over() <= 0)
    ) {
      throw new OutboxFullError(
        `outbox full: ${this.pending} readings wait for uplink (cap ${this.#opts.maxPending})`,
        this.#opts.retryAfterSeconds,
      );
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ rows, resolve, reject });
      this.#queuedRows += rows.length;
      if (!this.#scheduled) {
        this.#scheduled = true;
        // After the event loop's next I/O poll, not in a microtask: the
        // server parses the requests already on the wire so they join this
        // commit. Not setTimeout(0) either: Deno clamps that to ~2 ms a hop.
        setImmediate(() => void this.#flush());
      }
    });
  }

  async #flush(): Promise<void> {
    this.#scheduled = false;
    const batch = this.#queue;
    this.#queue = [];
    this.#queuedRows = 0;
    if (batch.length === 0) return this.#notifyIdle();
    const rows: Reading[] = batch.length === 1 ? batch[0].rows : batch.flatMap((p) => p.rows);
    const now = Date.now();
    let firstId: number;
    try {
      // Commit without blocking on the disk, then wait for the shared WAL
      // fsync: requests keep arriving and committing while it runs.
      firstId = this.#store.transaction(() => this.#insertAll(rows, now), this.#db);
      this.#lastId = firstId + rows.length - 1;
      this.#inFlight++;
      try {
        await this.#store.syncWal();
      } finally {
        this.#inFlight--;
      }
    } catch (err) {
      for (const p of batch) p.reject(err);
      return this.#notifyIdle();
    }
    this.commits++;
    this.committed += rows.length;
    if (!this.#opts.forward) {
      this.#uplinkedId = Math.max(this.#uplinkedId, firstId + rows.length - 1);
      this.#pruneUnforwarded();
    }
    let next = firstId;
    for (const p of batch) {
      const ids = new Array<number>(p.rows.length);
      for (let i = 0; i < ids.length; i++) ids[i] = next++;
      p.resolve(ids);
    }
    if (this.#opts.onCommitted) {
      this.#opts.onCommitted(rows.map((r, i) => ({ id: firstId + i, ...r })));
    }
    for (const l of this.#commitListeners) l(firstId + rows.length - 1);
    this.#notifyIdle();
  }

  /**
   * Inserts `rows` in order with explicit, contiguous ids and returns the
   * first. Ids are assigned here rather than by SQLite because pruning may
   * empty the table, and SQLite would then hand out ids below the uplink
   * cursor again. Rows go in chunks of {@linkcode CHUNK} per statement: one
   * native call per chunk instead of per row roughly halves the insert cost.
   */
  #insertAll(rows: Reading[], now: number): number {
    const firstId = this.#lastId + 1;
    let id = firstId;
    let i = 0;
    const args = this.#chunkArgs;
    for (; i + CHUNK <= rows.length; i += CHUNK) {
      for (let j = 0; j < CHUNK; j++) {
        const r = rows[i + j];
        const k = j * 6;
        args[k] = id++;
        args[k + 1] = r.device_id;
        args[k + 2] = r.metric;
        args[k + 3] = r.value;
        args[k + 4] = r.timestamp;
        args[k + 5] = now;
      }
      this.#insertChunk.run(...args);
    }
    for (; i < rows.length; i++) {
      const r = rows[i];
      this.#insert.run(id++, r.device_id, r.metric, r.value, r.timestamp, now);
    }
    return firstId;
  }

  /**
   * Without forwarding nothing advances the uplink cursor, so retention is
   * applied here, in slices, once enough rows have piled up past it.
   */
  #pruneUnforwarded(): void {
    const keepFrom = this.#lastId - this.#opts.retainUplinked;
    if (keepFrom - this.#prunedBelow < PRUNE_SLICE) return;
    this.#store.db.prepare("DELETE FROM readings WHERE id <= ?").run(keepFrom);
    this.#prunedBelow = keepFrom;
  }

  #notifyIdle(): void {
    if (this.#queue.length > 0 || this.#scheduled || this.#inFlight > 0) return;
    const waiters = this.#idle;
    this.#idle = [];
    for (const w of waiters) w();
  }

  /** Resolves once everything queued so far has been committed (or failed). */
  flushed(): Promise<void> {
    if (this.#queue.length === 0 && !this.#scheduled && this.#inFlight === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * Calls `listener` after every commit is durable, with the highest id now on
   * disk (the uplink sends nothing above it); returns the remover.
   */
  addCommitListener(listener: (durableId: number) => void): () => void {
    this.#commitListeners.add(listener);
    return () => void this.#commitListeners.delete(listener);
  }

  /** When the oldest pending reading was received (UTC ms), or null when none waits. */
  oldestPendingReceivedMs(): number | null {
    if (this.pending === 0) return null;
    const row = this.#store.db.prepare(
      "SELECT received_ms FROM readings WHERE id > ? ORDER BY id LIMIT 1",
    ).get(this.#uplinkedId) as { received_ms: number } | undefined;
    return row?.received_ms ?? null;
  }

  /**
   * The highest pending id received before `cutoffMs` (0 when none): the
   * uplink's age limit drops up to it. Walks the primary key from the cursor,
   * so the cost is the number of expired rows.
   */
  lastIdReceivedBefore(cutoffMs: number): number {
    if (this.pending === 0) return 0;
    const row = this.#store.db.prepare(
      "SELECT id FROM readings WHERE id > ? AND received_ms >= ? ORDER BY id LIMIT 1",
    ).get(this.#uplinkedId, cutoffMs) as { id: number } | undefined;
    const last = row ? row.id - 1 : this.#lastId;
    return last > this.#uplinkedId ? last : 0;
  }

  /** Up to `limit` readings with id above `afterId`, in log order (for the uplink). */
  readAfter(afterId: number, limit: number): StoredReading[] {
    const rows = this.#store.db.prepare(
      "SELECT id, device_id, metric, value, ts_ms FROM readings WHERE id > ? ORDER BY id LIMIT ?",
    ).all(afterId, limit) as {
      id: number;
      device_id: string;
      metric: string;
      value: number;
      ts_ms: number;
    }[];
    return rows.map((r) => ({
      id: r.id,
      device_id: r.device_id,
      metric: r.metric,
      value: r.value,
      timestamp: r.ts_ms,
    }));
  }

  /**
   * Records durably that the uplink has had every reading up to `id`
   * acknowledged, and prunes uplinked readings beyond the retention count.
   */
  markUplinked(id: number): void {
    if (id <= this.#uplinkedId) return;
    const upTo = Math.min(id, this.#lastId);
    this.#store.transaction(() => {
      this.#setUplinked.run(upTo);
      this.#store.db.prepare("DELETE FROM readings WHERE id <= ?").run(
        upTo - this.#opts.retainUplinked,
      );
    });
    this.#uplinkedId = upTo;
  }
}
