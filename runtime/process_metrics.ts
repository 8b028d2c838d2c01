/**
 * Process metrics in the names Prometheus client libraries use
 * (`process_*`), plus event-loop lag.
 *
 * @module
 */
import process from "node:process";
import type { Metrics } from "./metrics.ts";

// Deno guards /proc/self/* behind --allow-all; the node:process shim reads
// getrusage(2) with no permission at all.
function cpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** Registers process metrics; returns a function that stops the lag probe. */
export function registerProcessMetrics(metrics: Metrics): () => void {
  const started = Date.now() / 1000;
  metrics.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", [], (set) => {
    set(Deno.memoryUsage().rss);
  });
  metrics.gauge("process_heap_bytes", "JavaScript heap in use, in bytes.", [], (set) => {
    set(Deno.memoryUsage().heapUsed);
  });
  metrics.gauge(
    "process_start_time_seconds",
    "Start time since the epoch, in seconds.",
    [],
    (set) => {
      set(started);
    },
  );
  metrics.counterFunc(
    "process_cpu_seconds_total",
    "User and system CPU time, in seconds.",
    cpuSeconds,
  );
  const lagGauge = metrics.gauge(
    "edged_event_loop_lag_seconds",
    "How late a 500 ms timer fired most recently, in seconds.",
  );
  let expected = performance.now() + 500;
  const timer = setInterval(() => {
    const now = performance.now();
    lagGauge.set(Math.max(0, now - expected) / 1000);
    expected = now + 500;
  }, 500);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}
