/**
 * What every crash-consistency loop shares: the report shape, a kill at a
 * random moment, and the store checks (also used by tests/runtime).
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import type { EdgedProcess } from "../../tests/_helpers/edged.ts";

/** What one scenario did. */
export interface CrashReport {
  scenario: string;
  /** Kill-and-restart cycles completed. */
  trials: number;
  /** Broken invariants, each naming the trial and what was seen. */
  violations: string[];
  /** Scenario-specific counts (acknowledged readings, swaps, resumed downloads, ...). */
  stats: Record<string, number>;
  /** What was not checked, and why. */
  notes: string[];
}

/** Options every scenario takes. */
export interface CrashOptions {
  /** Kill-and-restart cycles. */
  trials: number;
  /** PRNG seed for the kill moments and operations. */
  seed: number;
  /** Progress lines go here. */
  log?: (line: string) => void;
}

/** `kill -9` the process and wait for it. */
export async function kill9(p: EdgedProcess): Promise<void> {
  try {
    p.child.kill("SIGKILL");
  } catch { /* already gone */ }
  await p.exited;
}

/** Milliseconds to sleep. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** SQLite's own consistency check of the store after a crash ("ok" when sound). */
export function integrityCheck(dataDir: string): string {
  const db = new DatabaseSync(`${dataDir}/edged.db`);
  try {
    const rows = db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[];
    return rows.map((r) => r.integrity_check).join("; ");
  } finally {
    db.close();
  }
}

/**
 * The `device_id:value` keys of every `seq` reading in the store: what the
 * durability checks compare with the readings that were answered 202.
 */
export function storedKeys(dataDir: string): Set<string> {
  const db = new DatabaseSync(`${dataDir}/edged.db`, { readOnly: true });
  try {
    const rows = db.prepare("SELECT device_id, value FROM readings WHERE metric = 'seq'").all() as {
      device_id: string;
      value: number;
    }[];
    return new Set(rows.map((r) => `${r.device_id}:${r.value}`));
  } finally {
    db.close();
  }
}
