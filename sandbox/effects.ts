/**
 * A module's effects for one message, committed as one: its kv writes, the
 * messages it published (written by the bus's durable sinks: the MQTT
 * outbox, the modules' message log) and its cursors, in the store's group
 * transaction (`runtime/commit.ts`), shared by every message of every module
 * that completed in the same event-loop turn. After `kill -9`, a module's
 * effects are either all there or none is, and its cursor says which.
 *
 * Only once the transaction is durable do the effects show: live bus
 * subscribers get the published messages, the cursors move, the statistics
 * count. A message whose call faulted has no effects but its cursor advance:
 * it was handled (and counted as a fault).
 *
 * @module
 */
import type { BusMessage, CommitParticipant, GroupCommit, Settle } from "../runtime/mod.ts";
import type { CursorStore } from "./cursors.ts";
import { keyString, type KvWrite, type SqliteKv } from "./kv.ts";
import type { Delivery, ModuleRecord } from "./module_record.ts";
import { ModuleEffectsRefusedError, WorkerGoneError } from "./errors.ts";
import type { Published } from "./host/context.ts";

/**
 * How long staged effects may wait for a group transaction someone needs
 * sooner (the next readings' commit), so they share its WAL sync.
 */
const SHARE_MS = 2;

/** One message's effects, staged for the next group transaction. */
export interface Effect {
  r: ModuleRecord;
  /** The record's generation when the message was sent (stale: thrown away). */
  gen: number;
  /** The delivery from a log, or undefined for a message of the messages API. */
  d?: Delivery;
  kv?: KvWrite[];
  published: Published[];
  /**
   * A messages API caller waiting for the effects to be durable: resolved then,
   * rejected when they were refused ({@link ModuleEffectsRefusedError}) or failed.
   */
  done?: { resolve: () => void; reject: (err: unknown) => void };
  /** Set when the runtime refused the module's kv writes of the transaction (over quota): none was written. */
  refused?: string;
}

/** What the effects need from the module host. */
export interface EffectsHost {
  /** Whether `r` is still installed at generation `gen`. */
  current(r: ModuleRecord, gen: number): boolean;
  /** Writes a published message to the bus's sinks (inside the transaction). */
  persist(msg: BusMessage): void;
  /** The effects of one transaction are durable, in order. */
  durable(
    effects: Effect[],
    cursors: Map<ModuleRecord, { readings: number; messages: number }>,
  ): void;
  /** They were rolled back: these modules must start over from their committed cursors. */
  failed(records: Set<ModuleRecord>, err: unknown): void;
  /** Inside the transaction, after the effects: anything else to write (pruning). */
  afterWrite?(): void;
}

/** The group-commit participant that writes module effects. */
export class Effects implements CommitParticipant {
  readonly #commits: GroupCommit;
  readonly #kv: SqliteKv;
  readonly #cursors: CursorStore;
  readonly #host: EffectsHost;
  #staged: Effect[] = [];
  /** Records whose cursors move without an effect (what they skipped, or found not to match). */
  #touched = new Set<ModuleRecord>();
  #written: Effect[] = [];
  #writtenCursors = new Map<ModuleRecord, { readings: number; messages: number }>();
  #remove: () => void;

  /** The participant of `commits`, writing kv rows with `kv` and cursors with `cursors`. */
  constructor(commits: GroupCommit, kv: SqliteKv, cursors: CursorStore, host: EffectsHost) {
    this.#commits = commits;
    this.#kv = kv;
    this.#cursors = cursors;
    this.#host = host;
    this.#remove = commits.join(this);
  }

  /** Stages one message's effects; its kv writes are visible to `kv_get` at once. */
  stage(e: Effect): void {
    if (e.kv?.length) this.#kv.stage(e.r.manifest.name, e.kv);
    this.#staged.push(e);
    // A caller of the messages API waits for these: commit at once.
    this.#commits.schedule(e.done ? 0 : SHARE_MS);
  }

  /** Moves `r`'s cursors to what it is done with, in the next transaction. */
  touch(r: ModuleRecord): void {
    this.#touched.add(r);
    this.#commits.schedule(SHARE_MS);
  }

  /** Effects staged and not yet durable. */
  get pending(): number {
    return this.#staged.length + this.#written.length;
  }

  hasWork(): boolean {
    return this.#staged.length > 0 || this.#touched.size > 0;
  }

  write(): void {
    const staged = this.#staged;
    this.#staged = [];
    // A module's kv writes of this whole transaction go in together, the last value per key
    // (a counter written by a thousand messages is one row update).
    const kv = new Map<ModuleRecord, Map<string, KvWrite>>();
    const live: Effect[] = [];
    for (const e of staged) {
      const r = e.r;
      if (!this.#host.current(r, e.gen)) {
        if (e.kv?.length) this.#kv.release(r.manifest.name, e.kv);
        // As in Outcomes.apply: a clear 503 to retry, never a bare internal error.
        e.done?.reject(
          new WorkerGoneError(
            r.lane,
            `removed or restarted module ${r.manifest.name}: its effects were not kept`,
          ),
        );
        continue;
      }
      live.push(e);
      if (!e.kv?.length) continue;
      let m = kv.get(r);
      if (!m) kv.set(r, m = new Map());
      for (const w of e.kv) m.set(keyString(w.key), w);
    }
    // Handed over before anything is written: if a write throws, seal() reports them failed.
    this.#written.push(...live);
    const refused = new Map<ModuleRecord, string>();
    for (const [r, writes] of kv) {
      // The Worker checks the quota before kv_set answers 0; this is the runtime's own check.
      const { version, grants: { kv: grant } } = r.manifest;
      if (grant === undefined) {
        refused.set(r, `its kv writes need a kv grant, which version ${version} does not have`);
      } else if (
        !this.#kv.writeIn(
          r.manifest.name,
          [...writes.values()],
          grant.max_bytes,
          grant.max_value_bytes,
        )
      ) {
        refused.set(
          r,
          `its kv writes would exceed its kv grant (version ${version}: max_bytes ` +
            `${grant.max_bytes}, max_value_bytes ${grant.max_value_bytes})`,
        );
      }
    }
    for (const e of live) {
      const r = e.r;
      const why = refused.get(r);
      if (why !== undefined) e.refused = why;
      else {
        const source = `module:${r.manifest.name}`;
        for (const p of e.published) {
          this.#host.persist({ topic: p.topic, payload: p.payload, source });
        }
      }
      if (e.d) this.#touched.add(r);
    }
    for (const r of this.#touched) {
      if (!this.#host.current(r, r.gen)) continue;
      const pos = { readings: r.safePos("readings"), messages: r.safePos("messages") };
      this.#cursors.put(r.manifest.name, { ...pos, skipped: r.s.dropped.lagging });
      this.#writtenCursors.set(r, pos);
    }
    this.#touched.clear();
    this.#host.afterWrite?.();
  }

  undo(): void {
    // The seal that follows reports the failure; cursors not written are moved again later.
    this.#kv.undo();
    for (const e of this.#written) if (e.d) this.#touched.add(e.r);
  }

  seal(): Settle | undefined {
    const effects = this.#written;
    const cursors = this.#writtenCursors;
    this.#written = [];
    this.#writtenCursors = new Map();
    this.#kv.sealed();
    if (effects.length === 0 && cursors.size === 0) return undefined;
    return {
      durable: () => {
        for (const e of effects) if (e.kv?.length) this.#kv.release(e.r.manifest.name, e.kv);
        this.#host.durable(effects, cursors);
        // A messages API caller learns that nothing of its message was kept, never success.
        for (const e of effects) {
          if (e.refused === undefined) e.done?.resolve();
          else e.done?.reject(new ModuleEffectsRefusedError(e.r.manifest.name, e.refused));
        }
      },
      failed: (err) => {
        const records = new Set<ModuleRecord>([...effects.map((e) => e.r), ...cursors.keys()]);
        for (const e of effects) e.done?.reject(err);
        this.#host.failed(records, err);
      },
    };
  }

  /** Forgets what is staged for `r` (it was removed): nothing of it is written any more. */
  drop(r: ModuleRecord): void {
    this.#touched.delete(r);
  }

  /** Leaves the group commit. */
  close(): void {
    this.#remove();
  }
}
