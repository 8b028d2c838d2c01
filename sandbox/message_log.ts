/**
 * The modules' message log: every bus message a module subscribes to that is
 * not a reading (module-to-module messages, messages from the broker's
 * subscriptions, adapters' write results) is written here by a durable bus
 * sink, inside the group transaction that commits its publisher's effects
 * (`runtime/commit.ts`). Each module reads it through its own cursor, as it
 * reads readings from the reading log; rows go once every cursor passed them.
 *
 * @module
 */
import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { BusMessage, BusSink, GroupCommit, Settle } from "../runtime/mod.ts";
import { MESSAGE_BYTES_SQL, messageBytes } from "../lib/mod.ts";

/** Migrations of the `module_messages` component. */
export const MESSAGE_LOG_MIGRATIONS = [
  `CREATE TABLE module_messages (
     id INTEGER PRIMARY KEY,
     topic TEXT NOT NULL,
     payload BLOB NOT NULL,
     source TEXT NOT NULL,
     created_ms INTEGER NOT NULL
   )`,
];

/** One logged message. */
export interface LoggedMessage {
  id: number;
  topic: string;
  payload: Uint8Array;
  source: string;
  createdMs: number;
}

/** What the log needs of the store. */
export interface MessageLogStore {
  db: DatabaseSync;
  commits: GroupCommit;
  migrate(component: string, migrations: string[]): void;
}

/** Options of {@link MessageLog}. */
export interface MessageLogOptions {
  /** Whether some module other than the publisher subscribes to `msg` (the sink writes only those). */
  wanted(msg: BusMessage): boolean;
  /** Called once rows are durable, in log order. */
  onDurable(rows: LoggedMessage[]): void;
  /** Ids handed out stay above this (the highest cursor), even when every row was pruned. */
  idsAbove?: number;
}

/** The message log table, its durable bus sink and its group-commit part. */
export class MessageLog {
  readonly #commits: GroupCommit;
  readonly #insert: StatementSync;
  readonly #read: StatementSync;
  readonly #count: StatementSync;
  readonly #prune: StatementSync;
  readonly #opts: MessageLogOptions;
  #lastId: number;
  #durableId: number;
  #prunedId: number;
  #written: LoggedMessage[] = [];
  #removeParticipant: () => void;
  /** Bytes (topic and payload) of each row in (`#prunedId`, `#lastId`], oldest first. */
  #sizes: number[] = [];
  /** Index in `#sizes` of the oldest row still held (rows before it were pruned). */
  #sizesHead = 0;
  /** Their sum. */
  #heldBytes = 0;

  /** The bus sink: writes every message some module wants, inside the group transaction. */
  readonly sink: BusSink;

  /** Opens the log in `store`, migrating its table. */
  constructor(store: MessageLogStore, options: MessageLogOptions) {
    store.migrate("module_messages", MESSAGE_LOG_MIGRATIONS);
    this.#opts = options;
    this.#commits = store.commits;
    const w = store.commits.db;
    this.#insert = w.prepare(
      "INSERT INTO module_messages (id, topic, payload, source, created_ms) VALUES (?, ?, ?, ?, ?)",
    );
    this.#prune = w.prepare("DELETE FROM module_messages WHERE id <= ?");
    this.#read = store.db.prepare(
      "SELECT id, topic, payload, source, created_ms FROM module_messages WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
    );
    this.#count = store.db.prepare(
      "SELECT topic, source, count(*) AS n FROM module_messages WHERE id > ? AND id <= ? GROUP BY topic, source",
    );
    const row = store.db.prepare(
      "SELECT coalesce(max(id), 0) AS last, coalesce(min(id), 1) - 1 AS pruned FROM module_messages",
    ).get() as { last: number; pruned: number };
    // Ids only grow, even when every row was pruned: cursors hold ids.
    this.#lastId = Math.max(row.last, options.idsAbove ?? 0);
    this.#durableId = this.#lastId;
    this.#prunedId = row.last === 0 ? this.#lastId : row.pruned;
    for (
      const r of store.db.prepare(
        `SELECT ${MESSAGE_BYTES_SQL} AS n FROM module_messages ORDER BY id`,
      ).iterate() as Iterable<{ n: number }>
    ) this.#push(r.n);
    this.sink = {
      wants: (msg) => msg.source !== "ingest" && this.#opts.wanted(msg),
      write: (msg) => this.#write(msg),
    };
    this.#removeParticipant = store.commits.join({
      hasWork: () => false,
      write: () => {},
      seal: () => this.#seal(),
      undo: () => {
        if (this.#written.length > 0) this.#lastId = this.#written[0].id - 1;
        this.#pop(this.#written.length);
        this.#written = [];
      },
      // Rows come through the bus sink while other participants write: a
      // savepoint of theirs rolled back takes its rows with it.
      mark: () => this.#written.length,
      rollbackTo: (n) => {
        const gone = this.#written.splice(n as number);
        if (gone.length > 0) this.#lastId = gone[0].id - 1;
        this.#pop(gone.length);
      },
    });
  }

  /** Highest id durable: readers see up to here. */
  get durableId(): number {
    return this.#durableId;
  }

  /** Highest id pruned. */
  get prunedId(): number {
    return this.#prunedId;
  }

  #write(msg: BusMessage): void {
    // Outside a group transaction (a bus without a committer): the next one seals it.
    if (!this.#commits.writing) this.#commits.schedule();
    const row: LoggedMessage = {
      id: this.#lastId + 1,
      topic: msg.topic,
      payload: msg.payload,
      source: msg.source,
      createdMs: Date.now(),
    };
    this.#insert.run(row.id, row.topic, row.payload, row.source, row.createdMs);
    this.#lastId = row.id;
    this.#written.push(row);
    this.#push(messageBytes(row.topic, row.payload));
  }

  #push(bytes: number): void {
    this.#sizes.push(bytes);
    this.#heldBytes += bytes;
  }

  /** Forgets the sizes of the newest `n` rows (rolled back). */
  #pop(n: number): void {
    for (let i = 0; i < n; i++) this.#heldBytes -= this.#sizes.pop()!;
  }

  /** Bytes (topics and payloads) of the rows the log holds. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** Bytes of the rows held up to `id`: what pruning to `id` frees. */
  bytesThrough(id: number): number {
    let n = 0;
    const end = Math.min(id - this.#prunedId, this.#sizes.length - this.#sizesHead);
    for (let i = 0; i < end; i++) n += this.#sizes[this.#sizesHead + i] ?? 0;
    return n;
  }

  /**
   * Where readers must skip to for the log to hold at most `maxBytes`: the
   * highest id such that the durable rows above it hold at most half of
   * `maxBytes`; undefined while the log holds no more than `maxBytes`.
   */
  skipTarget(maxBytes: number): number | undefined {
    if (this.#heldBytes <= maxBytes) return undefined;
    let id = this.#durableId;
    let above = 0;
    while (id > this.#prunedId) {
      const bytes = this.#sizes[this.#sizesHead + (id - this.#prunedId - 1)] ?? 0;
      if (above + bytes > maxBytes / 2) break;
      above += bytes;
      id--;
    }
    return id;
  }

  #seal(): Settle | undefined {
    const rows = this.#written;
    if (rows.length === 0) return undefined;
    this.#written = [];
    return {
      durable: () => {
        const last = rows[rows.length - 1].id;
        if (last > this.#durableId) this.#durableId = last;
        this.#opts.onDurable(rows);
      },
      failed: () => {},
    };
  }

  /** Up to `limit` durable rows above `afterId`, in order. */
  readAfter(afterId: number, limit: number): LoggedMessage[] {
    const rows = this.#read.all(afterId, this.#durableId, limit) as {
      id: number;
      topic: string;
      payload: Uint8Array;
      source: string;
      created_ms: number;
    }[];
    return rows.map((r) => ({
      id: r.id,
      topic: r.topic,
      payload: r.payload,
      source: r.source,
      createdMs: r.created_ms,
    }));
  }

  /** How many rows in (`afterId`, `upTo`] pass `accept` (seen once per topic and source). */
  countIn(
    afterId: number,
    upTo: number,
    accept: (topic: string, source: string) => boolean,
  ): number {
    const groups = this.#count.all(afterId, upTo) as { topic: string; source: string; n: number }[];
    let n = 0;
    for (const g of groups) if (accept(g.topic, g.source)) n += g.n;
    return n;
  }

  /** Deletes rows up to `id`; runs inside a group transaction. */
  pruneTo(id: number): void {
    const upTo = Math.min(id, this.#durableId);
    if (upTo <= this.#prunedId) return;
    this.#prune.run(upTo);
    for (let i = this.#prunedId; i < upTo && this.#sizesHead < this.#sizes.length; i++) {
      this.#heldBytes -= this.#sizes[this.#sizesHead++];
    }
    // Compact now and then, so the array does not keep what was pruned.
    if (this.#sizesHead > 4096 && this.#sizesHead * 2 > this.#sizes.length) {
      this.#sizes = this.#sizes.slice(this.#sizesHead);
      this.#sizesHead = 0;
    }
    this.#prunedId = upTo;
  }

  /** Leaves the group commit. */
  close(): void {
    this.#removeParticipant();
  }
}
