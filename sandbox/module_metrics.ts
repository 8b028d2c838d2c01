/**
 * The modules' metrics at `/metrics`: modules by state, messages, faults and
 * fuel per module (read from their statuses at scrape time), linear memory,
 * each module's lag behind the durable logs, and the histograms of call
 * duration and of the lag from a reading's 202 to the module's committed
 * effect.
 *
 * @module
 */
import type { Histogram, Metrics } from "../runtime/mod.ts";
import type { ModuleState, ModuleStatus } from "./module_record.ts";

/** The histograms the module host observes into. */
export interface ModuleMetrics {
  callDuration: Histogram;
  effectLag: Histogram;
}

/** Registers the module metrics; returns the histograms to observe with. */
export function registerModuleMetrics(
  metrics: Metrics,
  statuses: () => ModuleStatus[],
  memory: () => { budget: number; claimed: number },
): ModuleMetrics {
  const each = (fn: (s: ModuleStatus) => void) => statuses().forEach(fn);
  metrics.gauge(
    "edged_modules_memory_bytes",
    "The modules' memory budget (modules.memory_budget_bytes) and how much of it the installed modules may use (the sum of their limits.memory_bytes).",
    ["of"],
    (set) => {
      const m = memory();
      set(m.budget, { of: "budget" });
      set(m.claimed, { of: "claimed" });
    },
  );
  metrics.gauge("edged_modules", "Installed modules by state.", ["state"], (set) => {
    const counts: Record<ModuleState, number> = {
      running: 0,
      quarantined: 0,
      failed: 0,
      loading: 0,
    };
    each((s) => counts[s.state]++);
    for (const [state, n] of Object.entries(counts)) set(n, { state });
  });
  metrics.collectedCounter(
    "edged_module_messages_total",
    "Messages per module since load: in (delivered), out (published), dropped (oversize, or skipped for lagging).",
    ["module", "direction"],
    (set) =>
      each((s) => {
        set(s.messages_in, { module: s.name, direction: "in" });
        set(s.messages_out, { module: s.name, direction: "out" });
        set(s.dropped.oversize + s.dropped.lagging, { module: s.name, direction: "dropped" });
      }),
  );
  metrics.gauge(
    "edged_module_lag",
    "Entries of each durable log (readings, messages) a module's committed cursor is behind.",
    ["module", "log"],
    (set) =>
      each((s) => {
        if (!s.delivery) return;
        set(s.delivery.readings.lag, { module: s.name, log: "readings" });
        set(s.delivery.messages.lag, { module: s.name, log: "messages" });
      }),
  );
  metrics.collectedCounter(
    "edged_module_skipped_total",
    "Messages a module skipped because it fell further behind than modules.max_lag.",
    ["module"],
    (set) => each((s) => set(s.dropped.lagging, { module: s.name })),
  );
  metrics.collectedCounter(
    "edged_module_faults_total",
    "Faults per module and kind since load.",
    ["module", "kind"],
    (set) =>
      each((s) => {
        for (const [kind, n] of Object.entries(s.faults)) set(n, { module: s.name, kind });
      }),
  );
  metrics.collectedCounter(
    "edged_module_fuel_used_total",
    "Fuel consumed per module since load.",
    ["module"],
    (set) => each((s) => set(s.fuel_used, { module: s.name })),
  );
  metrics.collectedCounter(
    "edged_module_overruns_total",
    "Calls per module that held their Worker past their wall-clock deadline (fuel budget's calibrated time × 4 + 100 ms).",
    ["module"],
    (set) => each((s) => set(s.overruns, { module: s.name })),
  );
  metrics.gauge(
    "edged_module_memory_bytes",
    "Linear memory per module.",
    ["module"],
    (set) => each((s) => set(s.memory_bytes, { module: s.name })),
  );
  return {
    callDuration: metrics.histogram(
      "edged_module_call_duration_seconds",
      "Time one edge_on_message call takes, per module.",
      [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1],
      ["module"],
    ),
    effectLag: metrics.histogram(
      "edged_module_effect_lag_seconds",
      "Time from a message becoming durable in its log (a reading's 202) to the module's effects for it being durable.",
      [
        0.0005,
        0.001,
        0.002,
        0.003,
        0.005,
        0.0075,
        0.01,
        0.015,
        0.02,
        0.03,
        0.05,
        0.075,
        0.1,
        0.2,
        0.5,
        1,
        2,
        5,
        10,
        30,
        60,
      ],
      ["module"],
    ),
  };
}
