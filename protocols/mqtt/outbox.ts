/**
 * The durable outbox for bus messages on `uplink/{rest}` (module output).
 * Readings need no copy here: they already wait in the reading log.
 *
 * The outbox is a durable sink of the bus (`runtime/bus.ts`) and takes part
 * in the store's group commit (`runtime/commit.ts`): a module's messages are
 * written in the same transaction as the rest of its effects (kv writes, its
 * cursor), so they are there exactly when those are. A message published on
 * the bus by anyone else is written by the group transaction of the next
 * event-loop turn. Rows become visible to the uplink only once durable;
 * everything durable is sent at least once.
 *
 * The outbox is bounded in messages and in bytes (topic plus payload, queued
 * and committed): under `refuse-new` a message that does not fit is refused,
 * under `drop-oldest` the oldest rows go until it fits; both are counted. So
 * whatever modules publish, the disk it takes and the memory waiting for the
 * next commit stay within the caps.
 *
 * Each row remembers the reading log's last id when it was accepted
 * (`reading_mark`), so the uplink can merge both streams in arrival order and
 * keep per-topic order even when a module publishes on a reading's topic.
 *
 * @module
 */
import {
  CLOCK_SET_AFTER_MS,
  getLogger,
  MESSAGE_BYTES_SQL,
  messageBytes,
  type StampFollower,
} from "../../lib/mod.ts";
import {
  type BusMessage,
  type BusSink,
  followStamps,
  type Settle,
  type Store,
} from "../../runtime/mod.ts";

/** One message waiting for its PUBACK. */
export interface OutboxRow {
  id: number;
  /** Topic below `PREFIX/up/`. */
  topic: string;
  payload: Uint8Array;
  /** Reading-log id that was last when this row was accepted. */
  readingMark: number;
}

/** What to do when the outbox is full. */
export type OutboxPolicy = "refuse-new" | "drop-oldest";

/** Options for {@linkcode Outbox}. */
export interface OutboxOptions {
  /** Rows that may wait. @default {1000000} */
  maxMessages?: number;
  /** Bytes (topics plus payloads) that may wait. @default {268435456} (256 MiB) */
  maxBytes?: number;
  /** @default {"refuse-new"} */
  policy?: OutboxPolicy;
  /** The reading log's last id now (for `reading_mark`). */
  readingMark?: () => number;
  /** Called with the count whenever messages are dropped or refused. */
  onDropped?: (reason: "full" | "refused" | "expired", n: number) => void;
  /** Called after each commit that added rows is durable. */
  onCommitted?: () => void;
}

const MIGRATIONS = [
  `CREATE TABLE mqtt_outbox (
     id INTEGER PRIMARY KEY,
     topic TEXT NOT NULL,
     payload BLOB NOT NULL,
     reading_mark INTEGER NOT NULL,
     created_ms INTEGER NOT NULL
   );`,
];

interface Queued {
  topic: string;
  payload: Uint8Array;
  mark: number;
  /** Bytes of topic and payload. */
  size: number;
}

/** What the transaction being built added and dropped, to undo on a rollback. */
interface OutboxTxn {
  added: number;
  addedBytes: number;
  dropped: number;
  droppedBytes: number;
  /** The highest id before the transaction. */
  lastId: number;
}

/** The outbox's in-memory state at a savepoint (see `CommitParticipant.mark`). */
interface OutboxMark {
  lastId: number;
  count: number;
  bytes: number;
  txn: OutboxTxn | null;
}

const log = getLogger(["edged", "mqtt"]);

/**
 * The outbox table with group commit, size policy and age expiry.
 *
 * @example
 * ```ts ignore
 * const outbox = new Outbox(store, { maxMessages: 1000 });
 * outbox.add("telemetry/pump-7", new TextEncoder().encode("{}"));
 * ```
 */
export class Outbox {
  #store: Store;
  #queue: Queued[] = [];
  #count: number;
  /** Bytes of the committed rows. */
  #bytes: number;
  /** Bytes of {@link Outbox.#queue}. */
  #queueBytes = 0;
  /** Highest id written (maybe not yet durable). */
  #lastId: number;
  /** Moves the creation times this process stamped when the clock steps (see `ReadingLog.followClock`). */
  readonly #clock: StampFollower;
  /** Highest id durable: the uplink reads up to here. */
  #durableId: number;
  /** What the transaction being built added and dropped, to undo on a rollback. */
  #txn: OutboxTxn | null = null;
  /** Queued messages the transaction being built took (they go back to the queue if it fails). */
  #taken: Queued[] = [];
  #maxMessages: number;
  #maxBytes: number;
  #policy: OutboxPolicy;
  #readingMark: () => number;
  #onDropped: NonNullable<OutboxOptions["onDropped"]>;
  #onCommitted: () => void;
  #insert;
  #read;
  #removeParticipant: () => void;
  /** Commits that added rows so far. */
  commits = 0;

  /** The bus sink that writes `uplink/{rest}` messages here (a bare `uplink` has no cloud topic). */
  readonly sink: BusSink = {
    wants: (msg: BusMessage) => msg.topic.startsWith("uplink/") && msg.topic.length > 7,
    write: (msg: BusMessage) => void this.#insertNow(msg.topic.slice(7), msg.payload),
  };

  /** Opens the outbox in `store`, migrating its table. */
  constructor(store: Store, options: OutboxOptions = {}) {
    const {
      maxMessages = 1_000_000,
      maxBytes = 256 * 1024 * 1024,
      policy = "refuse-new",
      readingMark = () => 0,
      onDropped = () => {},
      onCommitted = () => {},
    } = options;
    if (!Number.isInteger(maxMessages) || maxMessages < 1) {
      throw new RangeError(`maxMessages must be a positive integer, got ${maxMessages}`);
    }
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) {
      throw new RangeError(`maxBytes must be a positive integer, got ${maxBytes}`);
    }
    this.#store = store;
    this.#maxMessages = maxMessages;
    this.#maxBytes = maxBytes;
    this.#policy = policy;
    this.#readingMark = readingMark;
    this.#onDropped = onDropped;
    this.#onCommitted = onCommitted;
    store.migrate("mqtt_outbox", MIGRATIONS);
    const db = store.db;
    const stats = db.prepare(
      `SELECT count(*) AS n, coalesce(max(id), 0) AS last, coalesce(sum(${MESSAGE_BYTES_SQL}), 0) AS bytes
       FROM mqtt_outbox`,
    ).get() as { n: number; last: number; bytes: number };
    this.#count = stats.n;
    this.#lastId = stats.last;
    this.#durableId = stats.last;
    this.#clock = followStamps(store.commits, {
      table: "mqtt_outbox",
      column: "created_ms",
      // The first id this process gives a message: older rows carry an earlier run's clock.
      firstId: stats.last + 1,
      lastId: () => this.#lastId,
      onFailed: (err) =>
        log.error("moving message times after a step of the system clock failed: {error}", {
          error: String(err),
        }),
    });
    this.#bytes = stats.bytes;
    this.#insert = store.commits.db.prepare(
      "INSERT INTO mqtt_outbox (id, topic, payload, reading_mark, created_ms) VALUES (?, ?, ?, ?, ?)",
    );
    this.#read = db.prepare(
      "SELECT id, topic, payload, reading_mark FROM mqtt_outbox WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
    );
    this.#removeParticipant = store.commits.join({
      hasWork: () => this.#queue.length > 0,
      write: () => this.#writeQueued(),
      seal: () => this.#seal(),
      undo: () => this.#undo(),
      mark: () => this.#mark(),
      rollbackTo: (m) => this.#rollbackTo(m as OutboxMark),
    });
  }

  /** Highest id durable (the uplink sends nothing above it). */
  get lastId(): number {
    return this.#durableId;
  }

  /** Messages durable or queued and not yet acknowledged. */
  get pending(): number {
    return this.#count + this.#queue.length;
  }

  /** Bytes (topics plus payloads) of the messages durable or queued and not yet acknowledged. */
  get pendingBytes(): number {
    return this.#bytes + this.#queueBytes;
  }

  /** Whether a message of `size` bytes is refused (counted): too large, or refuse-new and full. */
  #refuse(size: number): boolean {
    if (
      size > this.#maxBytes ||
      (this.#policy === "refuse-new" &&
        (this.pending >= this.#maxMessages || this.pendingBytes + size > this.#maxBytes))
    ) {
      this.#onDropped("refused", 1);
      return true;
    }
    return false;
  }

  /**
   * Accepts one message for uplink; returns false when it was refused
   * (counted): by the refuse-new policy when the outbox is full, or under any
   * policy when the message alone is larger than the byte cap. It becomes
   * durable with the next group commit.
   */
  add(topic: string, payload: Uint8Array): boolean {
    const size = messageBytes(topic, payload);
    if (this.#refuse(size)) return false;
    this.#queue.push({ topic, payload, mark: this.#readingMark(), size });
    this.#queueBytes += size;
    // drop-oldest: what waits for the commit is bounded too (the store may be closed).
    while (this.#queueBytes > this.#maxBytes || this.#queue.length > this.#maxMessages) {
      this.#queueBytes -= this.#queue.shift()!.size;
      this.#onDropped("full", 1);
    }
    this.#store.commits.schedule();
    return true;
  }

  /**
   * Writes one row now: the caller is inside a group transaction (a module's
   * effects). drop-oldest makes room in the same transaction.
   */
  #insertNow(
    topic: string,
    payload: Uint8Array,
    mark = this.#readingMark(),
    size?: number,
  ): boolean {
    const bytes = size ?? messageBytes(topic, payload);
    if (size === undefined && this.#refuse(bytes)) return false;
    // Outside a group transaction (a bus without a committer): the next one seals it.
    if (!this.#store.commits.writing) this.#store.commits.schedule();
    const t = this.#txn ??= {
      added: 0,
      addedBytes: 0,
      dropped: 0,
      droppedBytes: 0,
      lastId: this.#lastId,
    };
    this.#followClock();
    this.#insert.run(++this.#lastId, topic, payload, mark, Date.now());
    t.added++;
    t.addedBytes += bytes;
    this.#count++;
    this.#bytes += bytes;
    const overRows = this.#count - this.#maxMessages;
    const overBytes = this.#bytes - this.#maxBytes;
    if (overRows > 0 || overBytes > 0) {
      const gone = this.#deleteOldest(overRows, overBytes);
      t.dropped += gone.rows;
      t.droppedBytes += gone.bytes;
      this.#count -= gone.rows;
      this.#bytes -= gone.bytes;
    }
    return true;
  }

  #writeQueued(): void {
    const batch = this.#queue;
    if (batch.length === 0) return;
    this.#queue = [];
    this.#queueBytes = 0;
    this.#taken = batch;
    for (const m of batch) this.#insertNow(m.topic, m.payload, m.mark, m.size);
  }

  #undo(): void {
    // What the queue gave this transaction waits for the next one.
    const taken = this.#taken;
    this.#taken = [];
    for (const m of taken) this.#queueBytes += m.size;
    this.#queue = taken.concat(this.#queue);
    const t = this.#txn;
    if (!t) return;
    this.#lastId = t.lastId;
    this.#count += t.dropped - t.added;
    this.#bytes += t.droppedBytes - t.addedBytes;
    this.#unowe();
  }

  /** Ids given back by a rollback go to rows stamped after any step seen so far. */
  #unowe(): void {
    this.#clock.clampTo(this.#lastId);
  }

  /** The transaction's in-memory state now (see `CommitParticipant.mark`). */
  #mark(): OutboxMark {
    const t = this.#txn;
    return { lastId: this.#lastId, count: this.#count, bytes: this.#bytes, txn: t && { ...t } };
  }

  /** Forgets what was written through the bus sink since `m` (its savepoint was rolled back). */
  #rollbackTo(m: OutboxMark): void {
    this.#lastId = m.lastId;
    this.#count = m.count;
    this.#bytes = m.bytes;
    this.#txn = m.txn;
    this.#unowe();
  }

  #seal(): Settle | undefined {
    this.#taken = [];
    const t = this.#txn;
    this.#txn = null;
    if (!t) return undefined;
    const upTo = this.#lastId;
    return {
      durable: () => {
        if (upTo > this.#durableId) this.#durableId = upTo;
        this.commits++;
        if (t.dropped > 0) this.#onDropped("full", t.dropped);
        this.#onCommitted();
      },
      failed: () => {},
    };
  }

  /** Commits everything queued now and resolves once it is durable. */
  flush(): Promise<void> {
    if (this.#queue.length > 0) this.#store.commits.schedule();
    return this.#store.commits.flushed();
  }

  /** Leaves the group commit (the store outlives this outbox in tests). */
  close(): void {
    this.#removeParticipant();
  }

  /** Deletes the oldest rows until at least `rows` rows and `bytes` bytes are gone (in the group transaction). */
  #deleteOldest(rows: number, bytes: number): { rows: number; bytes: number } {
    const db = this.#store.commits.db;
    let upTo = 0;
    let n = 0;
    let freed = 0;
    // Sizes in pages of 1,000 rows, oldest first, until enough is found.
    for (let after = 0; n < rows || freed < bytes;) {
      const page = db.prepare(
        `SELECT id, ${MESSAGE_BYTES_SQL} AS size FROM mqtt_outbox WHERE id > ? ORDER BY id LIMIT 1000`,
      ).all(after) as { id: number; size: number }[];
      if (page.length === 0) break;
      for (const row of page) {
        if (n >= rows && freed >= bytes) break;
        upTo = row.id;
        n++;
        freed += row.size;
      }
      after = page[page.length - 1].id;
    }
    if (n === 0) return { rows: 0, bytes: 0 };
    db.prepare("DELETE FROM mqtt_outbox WHERE id <= ?").run(upTo);
    return { rows: n, bytes: freed };
  }

  /** Deletes every row up to `id`; returns how many rows and bytes went. */
  #deleteUpTo(id: number): { rows: number; bytes: number } {
    const db = this.#store.db;
    const gone = db.prepare(
      `SELECT count(*) AS rows, coalesce(sum(${MESSAGE_BYTES_SQL}), 0) AS bytes FROM mqtt_outbox WHERE id <= ?`,
    ).get(id) as { rows: number; bytes: number };
    if (gone.rows > 0) db.prepare("DELETE FROM mqtt_outbox WHERE id <= ?").run(id);
    return gone;
  }

  /** Up to `limit` durable rows above `afterId`, in order. */
  readAfter(afterId: number, limit: number): OutboxRow[] {
    const rows = this.#read.all(afterId, this.#durableId, limit) as {
      id: number;
      topic: string;
      payload: Uint8Array;
      reading_mark: number;
    }[];
    return rows.map((r) => ({
      id: r.id,
      topic: r.topic,
      payload: r.payload,
      readingMark: r.reading_mark,
    }));
  }

  /** Deletes every row up to `id`: their PUBACKs have arrived. */
  ackUpTo(id: number): void {
    if (!this.#store.isOpen) return;
    const gone = this.#deleteUpTo(id);
    this.#count -= gone.rows;
    this.#bytes -= gone.bytes;
  }

  /**
   * Drops rows created before `cutoffMs` (the age limit); returns how many. A
   * row stamped by a clock that was not set (before `CLOCK_SET_AFTER_MS`) has
   * no age: it and the rows after it stay.
   */
  expire(cutoffMs: number): number {
    if (!this.#store.isOpen || this.#count === 0) return 0;
    // Until the times stamped before a step of the clock have moved, ages lie.
    if (this.#followClock()) return 0;
    // created_ms grows with id, so the expired rows are a prefix.
    const row = this.#store.db.prepare(
      "SELECT id FROM mqtt_outbox WHERE created_ms >= ? OR created_ms < ? ORDER BY id LIMIT 1",
    ).get(cutoffMs, CLOCK_SET_AFTER_MS) as { id: number } | undefined;
    const upTo = row ? row.id - 1 : this.#lastId;
    const gone = this.#deleteUpTo(upTo);
    this.#count -= gone.rows;
    this.#bytes -= gone.bytes;
    if (gone.rows > 0) this.#onDropped("expired", gone.rows);
    return gone.rows;
  }

  /**
   * Follows steps of the system clock as `ReadingLog.followClock` does: the
   * creation times this process stamped before a step move by as much (in
   * the next group transaction), so that a message's age stays the time it
   * has waited. Returns whether a move is still owed.
   */
  #followClock(): boolean {
    return this.#clock.follow();
  }

  /** When the oldest waiting row was accepted (UTC ms), or null. */
  oldestCreatedMs(): number | null {
    if (this.#count === 0 || !this.#store.isOpen) return null;
    this.#followClock();
    const row = this.#store.db.prepare(
      "SELECT created_ms FROM mqtt_outbox ORDER BY id LIMIT 1",
    ).get() as { created_ms: number } | undefined;
    return row?.created_ms ?? null;
  }
}
