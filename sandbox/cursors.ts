/**
 * Each module's cursors, durable in the `module_cursors` table: how far into
 * the reading log and into the message log its effects have committed, and
 * how many entries it skipped for lagging. A cursor row is written in the
 * same group transaction as the effects that move it (`effects.ts`).
 *
 * @module
 */
import type { DatabaseSync, StatementSync } from "node:sqlite";

/** Migrations of the `module_cursors` component. */
export const CURSOR_MIGRATIONS = [
  `CREATE TABLE module_cursors (
     module TEXT PRIMARY KEY,
     readings INTEGER NOT NULL,
     messages INTEGER NOT NULL,
     skipped INTEGER NOT NULL DEFAULT 0
   ) WITHOUT ROWID`,
];

/** One module's durable position. */
export interface Cursor {
  /** Reading-log id up to which the module is done. */
  readings: number;
  /** Message-log id up to which the module is done. */
  messages: number;
  /** Log entries it skipped, over its life, for falling too far behind. */
  skipped: number;
}

/** The cursor table. */
export class CursorStore {
  readonly #upsert: StatementSync;
  readonly #delete: StatementSync;
  readonly #all: StatementSync;

  /** Opens the table in `store`; `writer` is the group commit's connection. */
  constructor(
    store: { db: DatabaseSync; migrate(component: string, migrations: string[]): void },
    writer: DatabaseSync,
  ) {
    store.migrate("module_cursors", CURSOR_MIGRATIONS);
    this.#upsert = writer.prepare(
      "INSERT INTO module_cursors (module, readings, messages, skipped) VALUES (?, ?, ?, ?) " +
        "ON CONFLICT (module) DO UPDATE SET readings = excluded.readings, " +
        "messages = excluded.messages, skipped = excluded.skipped",
    );
    this.#delete = writer.prepare("DELETE FROM module_cursors WHERE module = ?");
    this.#all = store.db.prepare("SELECT module, readings, messages, skipped FROM module_cursors");
  }

  /** Every stored cursor by module name. */
  loadAll(): Map<string, Cursor> {
    const rows = this.#all.all() as {
      module: string;
      readings: number;
      messages: number;
      skipped: number;
    }[];
    return new Map(rows.map((r) => [r.module, {
      readings: r.readings,
      messages: r.messages,
      skipped: r.skipped,
    }]));
  }

  /** Writes `module`'s cursor; runs inside a group transaction. */
  put(module: string, c: Cursor): void {
    this.#upsert.run(module, c.readings, c.messages, c.skipped);
  }

  /** Deletes `module`'s cursor; runs inside a group transaction. */
  delete(module: string): void {
    this.#delete.run(module);
  }
}
