/**
 * The durable reading log. Every ingested reading gets a row, written by the
 * store's group commit (`commit.ts`); a request is acknowledged only when the
 * transaction holding its rows is durable (WAL synced). Requests arriving in
 * the same event-loop turn share one transaction and one sync.
 *
 * Readings also wait here for their consumers: `uplinked_id` is the highest
 * id the uplink has had acknowledged; everything above it is pending and
 * counts against `maxPending`. Other consumers (each module's cursor) hold
 * rows through {@linkcode ReadingLog.hold}: nothing they still need is pruned.
 *
 * @module
 */
import { CLOCK_SET_AFTER_MS, EdgedError, getLogger, type StampFollower } from "../lib/mod.ts";
import { type CommitParticipant, followStamps, type GroupCommit, type Settle } from "./commit.ts";
import type { Store } from "./store.ts";
import type { StatementSync } from "node:sqlite";

const log = getLogger(["edged", "store"]);

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

/**
 * Told of the readings of one durable commit, in log order: `rows[i]` has id
 * `firstId + i`. The rows are the appended readings themselves, not copies:
 * a listener reads them and never changes them.
 */
export type RowsListener = (rows: readonly Reading[], firstId: number) => void;

/** A stored reading with when it was accepted (UTC ms). */
export interface LoggedReading extends StoredReading {
  receivedMs: number;
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
  /**
   * Called after each commit is durable with the committed readings, in log
   * order, and the id of the first (the others follow it one by one).
   */
  onCommitted?: RowsListener;
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

/**
 * Rows per multi-row INSERT statement, largest first: a commit of n rows
 * takes one statement per chunk of 100 and one per set bit of what remains
 * (a group commit of 64 single readings is one call, not 64).
 */
const CHUNKS = [100, 64, 32, 16, 8, 4, 2, 1];
/** Rows that pile up past retention before the log prunes. */
const PRUNE_SLICE = 10_000;

interface Pending {
  rows: Reading[];
  resolve: (ids: number[]) => void;
  reject: (err: unknown) => void;
}

/** What a consumer other than the uplink keeps of the log (see {@linkcode ReadingLog.hold}). */
export interface ReadingHold {
  /** Rows above this id are kept; the holder moves it as it consumes. */
  set(id: number): void;
  /** Lets go of every row. */
  release(): void;
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
export class ReadingLog implements CommitParticipant {
  #store: Store;
  #commits: GroupCommit;
  #queue: Pending[] = [];
  #queuedRows = 0;
  /** Requests written in the transaction being built, and their first id. */
  #written: { batch: Pending[]; rows: Reading[]; firstId: number; prunedBelow: number } | null =
    null;
  #lastId: number;
  #durableId: number;
  #uplinkedId: number;
  #opts: Required<Omit<ReadingLogOptions, "onCommitted">> & Pick<ReadingLogOptions, "onCommitted">;
  /** INSERTs of each of {@linkcode CHUNKS} rows, prepared on first use, with their arguments. */
  #inserts = new Map<number, { statement: StatementSync; args: (string | number)[] }>();
  #setUplinked;
  #prune;
  #prunedBelow = 0;
  #lastReceivedMs: number;
  /** Moves the receive times this process stamped when the clock steps (see {@linkcode ReadingLog.followClock}). */
  readonly #clock: StampFollower;
  #commitListeners = new Set<(durableId: number) => void>();
  #rowListeners = new Set<RowsListener>();
  #holds = new Set<{ id: number }>();
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
    this.#commits = store.commits;
    const db = this.#commits.db;
    this.#setUplinked = store.db.prepare(
      "UPDATE readings_meta SET value = ? WHERE key = 'uplinked_id'",
    );
    this.#prune = db.prepare("DELETE FROM readings WHERE id <= ?");
    this.#uplinkedId = (db.prepare("SELECT value FROM readings_meta WHERE key = 'uplinked_id'")
      .get() as { value: number }).value;
    const last = db.prepare("SELECT id, received_ms FROM readings ORDER BY id DESC LIMIT 1")
      .get() as { id: number; received_ms: number } | undefined;
    const maxId = last?.id ?? 0;
    this.#lastReceivedMs = last?.received_ms ?? 0;
    this.#lastId = Math.max(maxId, this.#uplinkedId);
    this.#durableId = this.#lastId;
    this.#clock = followStamps(this.#commits, {
      table: "readings",
      column: "received_ms",
      // The first id this process gives a reading: older rows carry an earlier run's clock.
      firstId: this.#lastId + 1,
      lastId: () => this.#lastId,
      onStep: (deltaMs) => this.#lastReceivedMs += deltaMs,
      onMoved: (owed, moved) =>
        owed.forEach((o, i) =>
          log.warning(
            "the system clock was set by {step} s: the receive times of the {moved} readings received before it, since start, moved with it",
            { step: (o.deltaMs / 1000).toFixed(1), moved: moved[i] },
          )
        ),
      onFailed: (err) =>
        log.error("moving receive times after a step of the system clock failed: {error}", {
          error: String(err),
        }),
    });
    this.#prunedBelow =
      (db.prepare("SELECT coalesce(min(id), 1) - 1 AS id FROM readings").get() as {
        id: number;
      }).id;
    if (!forward) this.#uplinkedId = this.#lastId;
    this.#commits.join(this);
  }

  /**
   * When the newest reading was received (UTC ms by the system clock of the
   * time): a clock that now reads earlier has been set back, or is not set.
   */
  get lastReceivedMs(): number {
    // Only a clock behind the newest stamp may have been set back since (a
    // step not seen yet): the common case costs no look at the clocks.
    if (Date.now() < this.#lastReceivedMs) this.followClock();
    return this.#lastReceivedMs;
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

  /** Highest id committed (durable or about to be). */
  get lastId(): number {
    return this.#lastId;
  }

  /** Highest id durable on disk: readers outside the log's own transactions see up to here. */
  get durableId(): number {
    return this.#durableId;
  }

  /** Highest id pruned: rows up to here are gone. */
  get prunedId(): number {
    return this.#prunedBelow;
  }

  /**
   * Keeps rows above the hold's id (initially `id`) from being pruned until
   * it moves or is released: a consumer other than the uplink (a module's
   * cursor) reads them later.
   */
  hold(id: number): ReadingHold {
    const h = { id };
    this.#holds.add(h);
    return {
      set: (to) => void (h.id = to),
      release: () => void this.#holds.delete(h),
    };
  }

  /** The highest id every consumer is done with (what may be pruned, retention aside). */
  #floor(retained: number): number {
    let floor = retained;
    for (const h of this.#holds) if (h.id < floor) floor = h.id;
    return floor;
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
      this.#commits.schedule();
    });
  }

  /** Group commit: whether requests wait for the next transaction. */
  hasWork(): boolean {
    return this.#queue.length > 0;
  }

  /** Group commit: writes every queued request's rows (see {@linkcode CommitParticipant}). */
  write(): void {
    const batch = this.#queue;
    if (batch.length === 0) return;
    this.#queue = [];
    this.#queuedRows = 0;
    const rows: Reading[] = batch.length === 1 ? batch[0].rows : batch.flatMap((p) => p.rows);
    this.followClock();
    const now = Date.now();
    if (now > this.#lastReceivedMs) this.#lastReceivedMs = now;
    this.#written = { batch, rows, firstId: this.#lastId + 1, prunedBelow: this.#prunedBelow };
    const firstId = this.#insertAll(rows, now);
    this.#lastId = firstId + rows.length - 1;
    this.#pruneInTransaction();
  }

  /** Group commit: the rows written in this transaction were rolled back. */
  undo(): void {
    const w = this.#written;
    if (!w) return;
    this.#lastId = w.firstId - 1;
    this.#prunedBelow = w.prunedBelow;
  }

  /** Group commit: answers the requests once their rows are durable. */
  seal(): Settle | undefined {
    const w = this.#written;
    this.#written = null;
    if (!w) return undefined;
    const { batch, rows, firstId } = w;
    const lastId = firstId + rows.length - 1;
    return {
      durable: () => {
        this.commits++;
        this.committed += rows.length;
        if (lastId > this.#durableId) this.#durableId = lastId;
        if (!this.#opts.forward) this.#uplinkedId = Math.max(this.#uplinkedId, lastId);
        let next = firstId;
        for (const p of batch) {
          const ids = new Array<number>(p.rows.length);
          for (let i = 0; i < ids.length; i++) ids[i] = next++;
          p.resolve(ids);
        }
        this.#opts.onCommitted?.(rows, firstId);
        for (const l of this.#rowListeners) l(rows, firstId);
        for (const l of this.#commitListeners) l(lastId);
      },
      failed: (err) => {
        for (const p of batch) p.reject(err);
      },
    };
  }

  /**
   * Inserts `rows` in order with explicit, contiguous ids and returns the
   * first. Ids are assigned here rather than by SQLite because pruning may
   * empty the table, and SQLite would then hand out ids below the uplink
   * cursor again. Rows go in chunks of {@linkcode CHUNKS} per statement: one
   * native call per chunk instead of per row roughly halves the insert cost.
   */
  #insertAll(rows: Reading[], now: number): number {
    const firstId = this.#lastId + 1;
    let id = firstId;
    let i = 0;
    for (const size of CHUNKS) {
      if (rows.length - i < size) continue;
      const { statement, args } = this.#chunkInsert(size);
      for (; i + size <= rows.length; i += size) {
        for (let j = 0; j < size; j++) {
          const r = rows[i + j];
          const k = j * 6;
          args[k] = id++;
          args[k + 1] = r.device_id;
          args[k + 2] = r.metric;
          args[k + 3] = r.value;
          args[k + 4] = r.timestamp;
          args[k + 5] = now;
        }
        statement.run(...args);
      }
    }
    return firstId;
  }

  #chunkInsert(size: number) {
    let insert = this.#inserts.get(size);
    if (!insert) {
      const statement = this.#commits.db.prepare(
        "INSERT INTO readings (id, device_id, metric, value, ts_ms, received_ms) VALUES " +
          Array(size).fill("(?, ?, ?, ?, ?, ?)").join(", "),
      );
      insert = { statement, args: new Array(size * 6) };
      this.#inserts.set(size, insert);
    }
    return insert;
  }

  /**
   * Prunes, inside the group transaction, rows every consumer is done with
   * beyond the retention count (in slices: one DELETE per
   * {@linkcode PRUNE_SLICE} rows). Without forwarding nothing advances the
   * uplink cursor, so retention counts from the newest row.
   */
  #pruneInTransaction(): void {
    const base = this.#opts.forward ? this.#uplinkedId : this.#lastId;
    const upTo = this.#floor(base - this.#opts.retainUplinked);
    if (upTo - this.#prunedBelow < PRUNE_SLICE) return;
    this.#prune.run(upTo);
    this.#prunedBelow = upTo;
  }

  /** Resolves once everything queued so far has been committed (or failed). */
  flushed(): Promise<void> {
    return this.#commits.flushed();
  }

  /**
   * Calls `listener` after every commit is durable, with the highest id now on
   * disk (the uplink sends nothing above it); returns the remover.
   */
  addCommitListener(listener: (durableId: number) => void): () => void {
    this.#commitListeners.add(listener);
    return () => void this.#commitListeners.delete(listener);
  }

  /**
   * Calls `listener` after every commit is durable with its readings, in log
   * order, and the first one's id (contiguous ids, continuing the previous
   * call's); returns the remover.
   */
  addRowsListener(listener: RowsListener): () => void {
    this.#rowListeners.add(listener);
    return () => void this.#rowListeners.delete(listener);
  }

  /** When the oldest pending reading was received (UTC ms), or null when none waits. */
  oldestPendingReceivedMs(): number | null {
    if (this.pending === 0) return null;
    this.followClock();
    const row = this.#store.db.prepare(
      "SELECT received_ms FROM readings WHERE id > ? ORDER BY id LIMIT 1",
    ).get(this.#uplinkedId) as { received_ms: number } | undefined;
    return row?.received_ms ?? null;
  }

  /**
   * The highest pending id received before `cutoffMs` (0 when none): the
   * uplink's age limit drops up to it. A row stamped by a clock that was not
   * set (before `CLOCK_SET_AFTER_MS`) has no age and stops it. Walks the
   * primary key from the cursor, so the cost is the number of expired rows.
   */
  lastIdReceivedBefore(cutoffMs: number): number {
    if (this.pending === 0) return 0;
    // Until the receive times stamped before a step have moved, ages lie.
    if (this.followClock()) return 0;
    const row = this.#store.db.prepare(
      "SELECT id FROM readings WHERE id > ? AND (received_ms >= ? OR received_ms < ?) ORDER BY id LIMIT 1",
    ).get(this.#uplinkedId, cutoffMs, CLOCK_SET_AFTER_MS) as { id: number } | undefined;
    const last = row ? row.id - 1 : this.#lastId;
    return last > this.#uplinkedId ? last : 0;
  }

  /**
   * Follows steps of the system clock (NTP setting a clock that was behind,
   * or ahead, by days): the receive times this process stamped before a step
   * move by as much, in a transaction of the group commit, so that the age of
   * a reading stays the time it has waited here (the uplink's age limit) and
   * the newest receive time stays comparable with the clock (ingest's test of
   * a clock that is not set). Every stamp looks first, so the rows stamped
   * before the step are exactly those up to the last id when it is seen.
   * Returns whether a move is still owed (ages are not to be trusted yet).
   */
  followClock(): boolean {
    return this.#clock.follow();
  }

  /** Up to `limit` readings with id above `afterId`, in log order (for the uplink and modules). */
  readAfter(afterId: number, limit: number): LoggedReading[] {
    this.#read ??= this.#store.db.prepare(
      "SELECT id, device_id, metric, value, ts_ms, received_ms FROM readings WHERE id > ? ORDER BY id LIMIT ?",
    );
    const rows = this.#read.all(afterId, limit) as {
      id: number;
      device_id: string;
      metric: string;
      value: number;
      ts_ms: number;
      received_ms: number;
    }[];
    return rows.map((r) => ({
      id: r.id,
      device_id: r.device_id,
      metric: r.metric,
      value: r.value,
      timestamp: r.ts_ms,
      receivedMs: r.received_ms,
    }));
  }

  #read: ReturnType<Store["db"]["prepare"]> | undefined;

  /**
   * How many readings in ids (`afterId`, `upTo`] pass `accept`, which sees
   * each distinct device and metric once (the module host counts what a
   * cursor that skips ahead loses).
   */
  countIn(
    afterId: number,
    upTo: number,
    accept: (device: string, metric: string) => boolean,
  ): number {
    const groups = this.#store.db.prepare(
      "SELECT device_id, metric, count(*) AS n FROM readings WHERE id > ? AND id <= ? GROUP BY device_id, metric",
    ).all(afterId, upTo) as { device_id: string; metric: string; n: number }[];
    let n = 0;
    for (const g of groups) if (accept(g.device_id, g.metric)) n += g.n;
    return n;
  }

  /**
   * Records durably that the uplink has had every reading up to `id`
   * acknowledged, and prunes uplinked readings beyond the retention count
   * that no other consumer holds.
   */
  markUplinked(id: number): void {
    if (id <= this.#uplinkedId) return;
    const upTo = Math.min(id, this.#lastId);
    const pruneTo = this.#floor(upTo - this.#opts.retainUplinked);
    this.#store.transaction(() => {
      this.#setUplinked.run(upTo);
      if (pruneTo > this.#prunedBelow) {
        this.#store.db.prepare("DELETE FROM readings WHERE id <= ?").run(pruneTo);
      }
    });
    if (pruneTo > this.#prunedBelow) this.#prunedBelow = pruneTo;
    this.#uplinkedId = upTo;
  }
}
