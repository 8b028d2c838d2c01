/// <reference lib="deno.worker" />
/**
 * The store's checkpointer thread (see `checkpoint.ts`): its own SQLite
 * connection to the database, which copies the write-ahead log back into the
 * database file (`PRAGMA wal_checkpoint(PASSIVE)`, with the fsyncs that
 * takes) while the runtime's thread goes on serving.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";

/** Runtime → checkpointer. */
export type ToCheckpointer = { t: "open"; path: string } | { t: "checkpoint" };

/** Checkpointer → runtime. */
export type FromCheckpointer = {
  t: "done";
  /** Frames in the WAL, and how many of them are in the database file now (-1 when busy). */
  log: number;
  checkpointed: number;
  error?: string;
};

let db: DatabaseSync | undefined;

self.onmessage = (e: MessageEvent<ToCheckpointer>) => {
  const msg = e.data;
  if (msg.t === "open") {
    db = new DatabaseSync(msg.path);
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec("PRAGMA wal_autocheckpoint = 0");
    return;
  }
  try {
    // https://sqlite.org/pragma.html#pragma_wal_checkpoint: PASSIVE never
    // blocks writers; the WAL restarts from its beginning once a checkpoint has
    // caught up and no reader uses older frames.
    const r = db!.prepare("PRAGMA wal_checkpoint(PASSIVE)").get() as {
      busy: number;
      log: number;
      checkpointed: number;
    };
    self.postMessage({ t: "done", log: r.log, checkpointed: r.checkpointed });
  } catch (err) {
    self.postMessage({ t: "done", log: -1, checkpointed: -1, error: String(err) });
  }
};
