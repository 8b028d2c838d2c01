/**
 * Shared pieces of the Modbus tests: adapters built from configuration
 * blocks as a user writes them, a sink that records what was ingested, and a
 * poll-until helper.
 *
 * @module
 */
import { ModbusAdapter, type ModbusAdapterOptions } from "../../protocols/mod.ts";
import type { AdapterReading, AdapterSink } from "../../protocols/mod.ts";
import { adaptersSchema } from "../../runtime/schema.ts";

export { until } from "../_helpers/until.ts";

/**
 * The README's tank as an `edged.toml`: adapter `tank1` at `url` (polled
 * every 100 ms) with its `level` (holding 0, tenths of a percent) and its
 * writable drain `valve` (coil 0), then `extra` (more TOML).
 */
export function tankConfig(url: string, extra = ""): string {
  return `
[[adapters.modbus]]
name = "tank1"
url = "${url}"
poll_ms = 100
timeout_ms = 300

[[adapters.modbus.points]]
metric = "level"
address = 0
type = "uint16"
scale = 0.1

[[adapters.modbus.points]]
metric = "valve"
table = "coil"
address = 0
writable = true
${extra}`;
}

/** An adapter from one `[[adapters.modbus]]` block (validated by the real schema). */
export function modbusAdapter(
  block: Record<string, unknown>,
  options: ModbusAdapterOptions = {},
): ModbusAdapter {
  const cfg = adaptersSchema.parse({ modbus: [{ name: "plc1", poll_ms: 50, ...block }] });
  return new ModbusAdapter(cfg.modbus[0], { reconnectMinMs: 50, reconnectMaxMs: 400, ...options });
}

/** A sink that keeps every reading it was given, or refuses while `refuse` is set. */
export function recordingSink(): AdapterSink & {
  got: AdapterReading[];
  refuse: boolean;
  controller: AbortController;
} {
  const controller = new AbortController();
  const sink = {
    got: [] as AdapterReading[],
    refuse: false,
    controller,
    signal: controller.signal,
    ingest(rows: AdapterReading[]) {
      if (sink.refuse) return Promise.reject(new Error("outbox full (test)"));
      sink.got.push(...rows);
      return Promise.resolve();
    },
  };
  return sink;
}

/** The last value ingested for `metric`, or undefined. */
export function lastValue(got: AdapterReading[], metric: string): number | undefined {
  for (let i = got.length - 1; i >= 0; i--) if (got[i].metric === metric) return got[i].value;
  return undefined;
}
