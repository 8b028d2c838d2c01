/**
 * Group commit: one SQLite transaction per event-loop turn for everything
 * that must become durable together (readings, module effects, outbox rows,
 * cursors), then one `fdatasync` of the WAL on a background thread. Whoever
 * staged work hears back only once the sync that covers it has finished.
 *
 * Writers take part in two ways: a {@linkcode CommitParticipant} (the
 * reading log, the outbox, the module host) writes what it has queued when
 * the transaction runs, each in its own savepoint so a failure fails only its
 * own work; {@linkcode GroupCommit.stage} runs a one-off closure in the next
 * transaction.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import type { DatabaseSync } from "node:sqlite";
import {
  getLogger,
  type OwedStep,
  StampFollower,
  storageError,
  StorageFullError,
} from "../lib/mod.ts";

const log = getLogger(["edged", "store"]);

/** Milliseconds between two log lines about failing commits (the count goes in the next). */
const FAILURE_LOG_MS = 10_000;

/** What a participant does once its writes of one transaction are durable, or failed. */
export interface Settle {
  /** The transaction is committed and the WAL synced. */
  durable(): void;
  /** The transaction (or this participant's part of it) was rolled back, or the sync failed. */
  failed(err: unknown): void;
}

/** A writer that joins every group transaction. */
export interface CommitParticipant {
  /** Whether it has anything to write (default: true); an idle participant costs no savepoint. */
  hasWork?(): boolean;
  /** Writes what it has queued, inside the transaction. Throwing rolls back only this participant. */
  write(): void;
  /**
   * Called once the transaction is committed (or, after `undo`, when its part
   * failed): hands over what to do with this transaction's writes once they
   * are durable (or failed). Undefined when it wrote nothing.
   */
  seal(): Settle | undefined;
  /**
   * Rolls back this participant's in-memory view of what it wrote in this
   * transaction (its savepoint, or the whole transaction, was rolled back).
   */
  undo?(err: unknown): void;
  /**
   * For a participant that other participants write through (a bus sink): a
   * token of its in-memory state, taken before each other participant's
   * savepoint, and given back to {@linkcode CommitParticipant.rollbackTo} when
   * that savepoint is rolled back, so it forgets what was written through it
   * there.
   */
  mark?(): unknown;
  /** Restores the state of a {@linkcode CommitParticipant.mark} token. */
  rollbackTo?(token: unknown): void;
}

/** Runs the fdatasync of the WAL; injectable for tests. */
export interface WalSyncer {
  sync(): Promise<void>;
}

/** Options for {@linkcode GroupCommit}. */
export interface GroupCommitOptions {
  /** The connection the transactions run on (synchronous=NORMAL: COMMIT does not wait for the disk). */
  db: DatabaseSync;
  /** Makes every commit made so far durable. */
  syncer: WalSyncer;
  /** Called after each COMMIT (before its sync). */
  onCommit?: () => void;
}

interface OneOff {
  write: () => void;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * The group committer of one store (see `Store.commits`).
 *
 * @example
 * ```ts ignore
 * const commits = store.commits;
 * await commits.stage(() => commits.db.prepare("INSERT INTO t VALUES (1)").run());
 * ```
 */
export class GroupCommit {
  /** The connection every group transaction runs on; prepare statements for `write` on it. */
  readonly db: DatabaseSync;
  readonly #syncer: WalSyncer;
  readonly #onCommit: () => void;
  readonly #participants: CommitParticipant[] = [];
  #scheduled = false;
  #lazy: ReturnType<typeof setTimeout> | undefined;
  /** Work asked for a transaction within some milliseconds and none has started since. */
  #lazyDue = false;
  #writing = false;
  #inFlight = 0;
  /** Staged one-offs waiting for the next transaction. */
  #oneOffs: OneOff[] = [];
  /** One-offs written in the current transaction. */
  #written: OneOff[] = [];
  /** Group transactions committed so far. */
  commits = 0;
  /** Failures: group transactions rolled back whole, writers' parts rolled back, failed syncs. */
  failures = 0;
  /** Of {@linkcode GroupCommit.failures}, those for a full disk. */
  fullFailures = 0;
  /** Whether the last group transaction failed for a full disk (none committed since). */
  diskFull = false;
  /** Failures not logged yet, and when the last log line went out. */
  #unlogged = 0;
  #loggedAt = -Infinity;

  /** A committer over `options.db`. */
  constructor(options: GroupCommitOptions) {
    this.db = options.db;
    this.#syncer = options.syncer;
    this.#onCommit = options.onCommit ?? (() => {});
  }

  /** Adds a participant; participants write in the order they joined. Returns the remover. */
  join(p: CommitParticipant): () => void {
    this.#participants.push(p);
    return () => {
      const i = this.#participants.indexOf(p);
      if (i >= 0) this.#participants.splice(i, 1);
    };
  }

  /** Whether a group transaction's writes run now. */
  get writing(): boolean {
    return this.#writing;
  }

  /**
   * A participant queued work: run a group transaction on the next turn of the
   * event loop, or, with `withinMs`, within that many milliseconds (work that
   * can wait joins the next transaction someone needs sooner, sharing its
   * WAL sync, instead of costing one of its own).
   */
  schedule(withinMs = 0): void {
    if (this.#scheduled) return;
    if (withinMs > 0) {
      this.#lazyDue = true;
      // A timer still armed from earlier work fires sooner: within withinMs too.
      this.#lazy ??= setTimeout(() => {
        this.#lazy = undefined;
        if (this.#lazyDue) this.schedule();
      }, withinMs);
      return;
    }
    // An armed lazy timer stays: the transaction about to run takes its work
    // (and clears #lazyDue), so it fires for nothing, which costs less than
    // clearing it and arming a new one for every transaction under load. It is
    // cleared once the committer is idle.
    this.#scheduled = true;
    // After the event loop's next I/O poll, not in a microtask: work already
    // on the wire joins this transaction. Not setTimeout(0): Deno clamps that
    // to ~2 ms a hop.
    setImmediate(() => this.#flush());
  }

  /**
   * Runs `write` inside the next group transaction (at once when called while
   * one is being written) and resolves once it is durable; rejects when it
   * threw (nothing it wrote stays) or the commit failed.
   */
  stage(write: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const item = { write, resolve, reject };
      if (this.#writing) this.#writeOneOff(item);
      else {
        this.#oneOffs.push(item);
        this.schedule();
      }
    });
  }

  #writeOneOff(item: OneOff): void {
    const failed = this.#inSavepoint(item.write);
    if (failed) item.reject(this.#failed(failed.err, "a one-off write failed and was rolled back"));
    else this.#written.push(item);
  }

  /**
   * Runs `write` in a savepoint of its own. When it throws, the savepoint is
   * rolled back, and so is what it wrote through the participants (see
   * {@linkcode CommitParticipant.mark}; `self`'s own undo does that for it),
   * and the error is returned.
   */
  #inSavepoint(write: () => void, self?: CommitParticipant): { err: unknown } | undefined {
    const marks = this.#participants.map((q) => q === self ? undefined : q.mark?.());
    this.db.exec("SAVEPOINT w");
    try {
      write();
      this.db.exec("RELEASE w");
      return undefined;
    } catch (err) {
      this.db.exec("ROLLBACK TO w");
      this.db.exec("RELEASE w");
      this.#participants.forEach((q, i) => {
        if (marks[i] !== undefined) q.rollbackTo?.(marks[i]);
      });
      return { err };
    }
  }

  #flush(): void {
    this.#scheduled = false;
    this.#lazyDue = false;
    if (!this.db.isOpen) {
      const err = new Error("store is closed");
      for (const item of this.#oneOffs.splice(0)) item.reject(err);
      for (const p of this.#participants) {
        p.undo?.(err);
        p.seal()?.failed(err);
      }
      return;
    }
    try {
      this.db.exec("BEGIN IMMEDIATE");
      this.#writing = true;
      try {
        for (const item of this.#oneOffs.splice(0)) this.#writeOneOff(item);
        for (const p of this.#participants) {
          if (p.hasWork && !p.hasWork()) continue;
          this.#writeParticipant(p);
        }
      } finally {
        this.#writing = false;
      }
      this.db.exec("COMMIT");
    } catch (err) {
      // Nothing of this transaction is in the database (SQLite rolls back what
      // COMMIT could not write, a full disk included): every writer forgets what
      // it wrote, and whoever waits for it hears why.
      const e = this.#failed(err, "a group commit failed, nothing of it was stored");
      this.diskFull = e instanceof StorageFullError;
      try {
        if (this.db.isOpen && this.db.isTransaction) this.db.exec("ROLLBACK");
      } catch { /* the connection is gone; the transaction with it */ }
      for (const item of this.#written.splice(0)) item.reject(e);
      for (const p of this.#participants) {
        p.undo?.(e);
        p.seal()?.failed(e);
      }
      return;
    }
    this.diskFull = false;
    // Sealed only now: until COMMIT has succeeded, every writer can still undo.
    const settles: Settle[] = [];
    for (const p of this.#participants) {
      const s = p.seal();
      if (s) settles.push(s);
    }
    const written = this.#written.splice(0);
    if (written.length > 0) {
      settles.push({
        durable: () => written.forEach((i) => i.resolve()),
        failed: (err) => written.forEach((i) => i.reject(err)),
      });
    }
    if (settles.length === 0) return; // nothing was written: nothing to sync
    this.commits++;
    this.#onCommit();
    this.#inFlight++;
    this.#syncer.sync().then(
      () => settles.forEach((s) => s.durable()),
      (err) => {
        const e = this.#failed(err, "syncing the WAL failed, a commit may not be on disk");
        settles.forEach((s) => s.failed(e));
      },
    ).finally(() => {
      this.#inFlight--;
      if (this.#inFlight === 0 && !this.#scheduled && !this.#lazyDue) {
        clearTimeout(this.#lazy);
        this.#lazy = undefined;
      }
    });
  }

  /** Writes `p`'s part in a savepoint of its own: when it fails, only `p`'s work fails. */
  #writeParticipant(p: CommitParticipant): void {
    const failed = this.#inSavepoint(() => p.write(), p);
    if (!failed) return;
    const e = this.#failed(
      failed.err,
      "a writer's part of a group commit failed and was rolled back",
    );
    p.undo?.(e);
    p.seal()?.failed(e);
  }

  /**
   * Counts a failure (a transaction, or a writer's part of one), logs it (at
   * most every few seconds, with how many there were) and returns what its
   * writers are told.
   */
  #failed(err: unknown, what: string): unknown {
    const e = storageError(err);
    this.failures++;
    if (e instanceof StorageFullError) this.fullFailures++;
    this.#unlogged++;
    const now = performance.now();
    if (now - this.#loggedAt >= FAILURE_LOG_MS) {
      log.error("{what} ({n} failures since the last report): {error}", {
        what,
        n: this.#unlogged,
        error: String(err),
      });
      this.#unlogged = 0;
      this.#loggedAt = now;
    }
    return e;
  }

  /**
   * Resolves once everything staged so far is durable (or failed): a
   * transaction after it, and the syncs before, have finished. Never rejects.
   */
  flushed(): Promise<void> {
    if (!this.#scheduled && !this.#lazyDue && this.#inFlight === 0) {
      return Promise.resolve();
    }
    return this.stage(() => {}).catch(() => {});
  }
}

interface SyncWaiter {
  seq: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * `fdatasync` of one file on Deno's blocking thread pool, with syncs
 * overlapping: a caller gets a sync that starts after its call, at once while
 * fewer than `parallel` run (on separate descriptors), else the one that
 * starts when the next running sync ends. A sync that ends covers every
 * caller of the syncs started before it, so callers are answered in order.
 *
 * Overlap matters on virtual disks, where a flush takes milliseconds but
 * several flushes in flight take hardly longer than one: a request no longer
 * waits for the sync running when it committed to end before its own starts.
 */
export class FileSyncer implements WalSyncer {
  readonly #path: string;
  readonly #parallel: number;
  readonly #files: Deno.FsFile[] = [];
  #running = 0;
  #started = 0;
  #done = 0;
  #queued = false;
  #waiters: SyncWaiter[] = [];
  /** Syncs done. */
  syncs = 0;

  /** Syncs `path` (opened on first use), at most `parallel` at a time. */
  constructor(path: string, parallel = 4) {
    if (!Number.isInteger(parallel) || parallel < 1) {
      throw new RangeError(`parallel must be a positive integer, got ${parallel}`);
    }
    this.#path = path;
    this.#parallel = parallel;
  }

  /** Resolves once a sync that started after this call has finished. */
  sync(): Promise<void> {
    let seq: number;
    if (this.#running < this.#parallel) {
      seq = ++this.#started;
      this.#run(seq);
    } else {
      // The next sync to start (when a running one ends) covers this caller.
      seq = this.#started + 1;
      this.#queued = true;
    }
    return new Promise((resolve, reject) => this.#waiters.push({ seq, resolve, reject }));
  }

  #run(seq: number): void {
    this.#running++;
    void this.#syncOnce().then(() => {
      this.syncs++;
      if (seq > this.#done) this.#done = seq;
      this.#settle((w) => w.seq <= this.#done, (w) => w.resolve());
    }, (err) => {
      this.#settle((w) => w.seq === seq, (w) => w.reject(err));
    }).finally(() => {
      this.#running--;
      if (this.#queued) {
        this.#queued = false;
        this.#run(++this.#started);
      }
    });
  }

  #settle(match: (w: SyncWaiter) => boolean, act: (w: SyncWaiter) => void): void {
    const keep: SyncWaiter[] = [];
    const ready: SyncWaiter[] = [];
    for (const w of this.#waiters) (match(w) ? ready : keep).push(w);
    this.#waiters = keep;
    for (const w of ready) act(w);
  }

  async #syncOnce(): Promise<void> {
    let f = this.#files.pop();
    if (!f) {
      f = await Deno.open(this.#path, { read: true });
    }
    try {
      await f.syncData();
    } finally {
      this.#files.push(f);
    }
  }

  /** Closes the descriptors (syncs still running finish on theirs). */
  close(): void {
    for (const f of this.#files.splice(0)) f.close();
  }
}

/** Options of {@linkcode followStamps}. */
export interface FollowStampsOptions {
  /** The table whose rows carry system-clock stamps, with an integer `id` key. */
  table: string;
  /** The column of the stamps (ms since the epoch). */
  column: string;
  /** The first id this process stamps (rows below it carry an earlier run's clock). */
  firstId: number;
  /** The highest id stamped so far. */
  lastId: () => number;
  /** A step was seen (its move is still to come). */
  onStep?: (deltaMs: number) => void;
  /** The move of `owed` committed: `moved[i]` rows moved by `owed[i]`. */
  onMoved?: (owed: readonly OwedStep[], moved: readonly number[]) => void;
  /** The move failed; nothing moved, and the next look tries again. */
  onFailed: (err: unknown) => void;
}

/**
 * A {@linkcode StampFollower} for `table`'s stamps that moves them in a
 * transaction of `commits`: for each owed step, the rows this process stamped
 * up to its id move by its delta.
 */
export function followStamps(commits: GroupCommit, o: FollowStampsOptions): StampFollower {
  const shift = commits.db.prepare(
    `UPDATE ${o.table} SET ${o.column} = ${o.column} + ? WHERE id >= ? AND id <= ?`,
  );
  return new StampFollower({
    firstId: o.firstId,
    lastId: o.lastId,
    writing: () => commits.writing,
    onStep: o.onStep,
    move: (owed) => {
      if (!commits.db.isOpen) return Promise.reject(new Error("store is closed"));
      const moved: number[] = [];
      return commits.stage(() => {
        moved.length = 0;
        for (const s of owed) moved.push(Number(shift.run(s.deltaMs, o.firstId, s.upTo).changes));
      }).then(() => o.onMoved?.(owed, moved), (err) => {
        o.onFailed(err);
        throw err;
      });
    },
  });
}
