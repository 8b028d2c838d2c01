/**
 * Metrics of the store, the reading log and the bus.
 *
 * @module
 */
import type { Bus } from "./bus.ts";
import type { Metrics } from "./metrics.ts";
import type { ReadingLog } from "./readings.ts";
import type { Store } from "./store.ts";

/** Registers the store, reading log and bus gauges and counters on `metrics`. */
export function registerStoreMetrics(
  metrics: Metrics,
  store: Store,
  readings: ReadingLog,
  bus: Bus,
): void {
  metrics.gauge(
    "edged_store_size_bytes",
    "Database plus write-ahead log on disk, in bytes.",
    [],
    (set) => {
      if (store.isOpen) set(store.sizeBytes());
    },
  );
  metrics.gauge(
    "edged_readings_pending",
    "Readings durable on disk and waiting for uplink.",
    [],
    (set) => set(readings.pending),
  );
  metrics.counterFunc(
    "edged_store_commits_total",
    "Group commits (each one fsync).",
    () => readings.commits,
  );
  metrics.counterFunc(
    "edged_store_commit_failures_total",
    "Group commits, or a writer's part of one, that failed (their writers were told), and failed WAL syncs.",
    () => store.commits.failures,
  );
  metrics.counterFunc(
    "edged_store_full_disk_failures_total",
    "Of edged_store_commit_failures_total, those because the data directory's disk was full.",
    () => store.commits.fullFailures,
  );
  metrics.gauge(
    "edged_store_disk_full",
    "1 while the data directory's disk is full: the last group commit failed for it.",
    [],
    (set) => set(store.commits.diskFull ? 1 : 0),
  );
  metrics.counterFunc(
    "edged_store_readings_committed_total",
    "Readings committed to disk.",
    () => readings.committed,
  );
  metrics.counterFunc(
    "edged_bus_messages_total",
    "Messages published on the internal bus.",
    () => bus.published,
  );
}
