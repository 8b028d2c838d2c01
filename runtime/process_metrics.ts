/**
 * Process metrics in the names Prometheus client libraries use
 * (`process_*`), plus event-loop lag.
 *
 * @module
 */
import type { Metrics } from "./metrics.ts";

const CLK_TCK = 100; // Linux USER_HZ, fixed at 100 on every architecture we target

function cpuSeconds(): number | undefined {
  try {
    // /proc/self/stat fields 14 and 15 (utime, stime) in clock ticks; the
    // command name (field 2) may contain spaces, so split after its ')'.
    const stat = Deno.readTextFileSync("/proc/self/stat");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
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
