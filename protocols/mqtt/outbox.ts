/**
 * The durable outbox for bus messages on `uplink/{rest}` (module output).
 * Readings need no copy here: they already wait in the reading log.
 *
 * A message published on the bus is queued and written by a group commit in
 * the next macrotask (one fsync for everything published meanwhile), the same
 * trade the reading log makes. A module's `publish` returns before that
 * commit, so the window in which a power cut can lose a module message is one
 * event-loop turn; everything committed survives and is sent at least once.
 *
 * Each row remembers the reading log's last id when it was accepted
 * (`reading_mark`), so the uplink can merge both streams in arrival order and
 * keep per-topic order even when a module publishes on a reading's topic.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import type { Store } from "../../runtime/mod.ts";

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
  /** @default {"refuse-new"} */
  policy?: OutboxPolicy;
  /** The reading log's last id now (for `reading_mark`). */
  readingMark?: () => number;
  /** Called with the count whenever messages are dropped or refused. */
  onDropped?: (reason: "full" | "refused" | "expired", n: number) => void;
  /** Called after each commit that added rows. */
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
}

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
  #scheduled = false;
  #count: number;
  #lastId: number;
  #maxMessages: number;
  #policy: OutboxPolicy;
  #readingMark: () => number;
  #onDropped: NonNullable<OutboxOptions["onDropped"]>;
  #onCommitted: () => void;
  #insert;
  #read;
  /** Commits so far. */
  commits = 0;

  /** Opens the outbox in `store`, migrating its table. */
  constructor(store: Store, options: OutboxOptions = {}) {
    const {
      maxMessages = 1_000_000,
      policy = "refuse-new",
      readingMark = () => 0,
      onDropped = () => {},
      onCommitted = () => {},
    } = options;
    if (!Number.isInteger(maxMessages) || maxMessages < 1) {
      throw new RangeError(`maxMessages must be a positive integer, got ${maxMessages}`);
    }
    this.#store = store;
    this.#maxMessages = maxMessages;
    this.#policy = policy;
    this.#readingMark = readingMark;
    this.#onDropped = onDropped;
    this.#onCommitted = onCommitted;
    store.migrate("mqtt_outbox", MIGRATIONS);
    const db = store.db;
    const stats = db.prepare("SELECT count(*) AS n, coalesce(max(id), 0) AS last FROM mqtt_outbox")
      .get() as { n: number; last: number };
    this.#count = stats.n;
    this.#lastId = stats.last;
    this.#insert = db.prepare(
      "INSERT INTO mqtt_outbox (id, topic, payload, reading_mark, created_ms) VALUES (?, ?, ?, ?, ?)",
    );
    this.#read = db.prepare(
      "SELECT id, topic, payload, reading_mark FROM mqtt_outbox WHERE id > ? ORDER BY id LIMIT ?",
    );
  }

  /** Highest id committed. */
  get lastId(): number {
    return this.#lastId;
  }

  /** Messages durable or queued and not yet acknowledged. */
  get pending(): number {
    return this.#count + this.#queue.length;
  }

  /**
   * Accepts one message for uplink; returns false when the refuse-new policy
   * refused it (counted). It becomes durable with the next group commit.
   */
  add(topic: string, payload: Uint8Array): boolean {
    if (this.#policy === "refuse-new" && this.pending >= this.#maxMessages) {
      this.#onDropped("refused", 1);
      return false;
    }
    this.#queue.push({ topic, payload, mark: this.#readingMark() });
    if (!this.#scheduled) {
      this.#scheduled = true;
      // setImmediate, not setTimeout(0), which Deno clamps to ~2 ms a hop.
      setImmediate(() => this.flush());
    }
    return true;
  }

  /** Commits everything queued now (also called by the timer). */
  flush(): void {
    this.#scheduled = false;
    const batch = this.#queue;
    if (batch.length === 0 || !this.#store.isOpen) return;
    this.#queue = [];
    const now = Date.now();
    let dropped = 0;
    this.#store.transaction(() => {
      let id = this.#lastId;
      for (const m of batch) this.#insert.run(++id, m.topic, m.payload, m.mark, now);
      const over = this.#count + batch.length - this.#maxMessages;
      if (over > 0) dropped = this.#deleteOldest(over);
      this.#lastId = id;
    });
    this.#count += batch.length - dropped;
    this.commits++;
    if (dropped > 0) this.#onDropped("full", dropped);
    this.#onCommitted();
  }

  #deleteOldest(n: number): number {
    return Number(
      this.#store.db.prepare(
        "DELETE FROM mqtt_outbox WHERE id IN (SELECT id FROM mqtt_outbox ORDER BY id LIMIT ?)",
      ).run(n).changes,
    );
  }

  /** Up to `limit` rows above `afterId`, in order. */
  readAfter(afterId: number, limit: number): OutboxRow[] {
    const rows = this.#read.all(afterId, limit) as {
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
    const changes = Number(
      this.#store.db.prepare("DELETE FROM mqtt_outbox WHERE id <= ?").run(id).changes,
    );
    this.#count -= changes;
  }

  /** Drops rows created before `cutoffMs` (the age limit); returns how many. */
  expire(cutoffMs: number): number {
    if (!this.#store.isOpen || this.#count === 0) return 0;
    // created_ms grows with id, so the expired rows are a prefix.
    const row = this.#store.db.prepare(
      "SELECT id FROM mqtt_outbox WHERE created_ms >= ? ORDER BY id LIMIT 1",
    ).get(cutoffMs) as { id: number } | undefined;
    const upTo = row ? row.id - 1 : this.#lastId;
    const n = Number(
      this.#store.db.prepare("DELETE FROM mqtt_outbox WHERE id <= ?").run(upTo).changes,
    );
    this.#count -= n;
    if (n > 0) this.#onDropped("expired", n);
    return n;
  }

  /** When the oldest waiting row was accepted (UTC ms), or null. */
  oldestCreatedMs(): number | null {
    if (this.#count === 0 || !this.#store.isOpen) return null;
    const row = this.#store.db.prepare(
      "SELECT created_ms FROM mqtt_outbox ORDER BY id LIMIT 1",
    ).get() as { created_ms: number } | undefined;
    return row?.created_ms ?? null;
  }
}
