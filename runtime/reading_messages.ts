/**
 * Readings as bus messages: a committed reading is published as
 * `sensors/{device_id}/{metric}` with a JSON payload (MISSION.md, "Module ABI
 * v1": "Readings ingested over HTTP appear on the bus as ...").
 *
 * @module
 */
import type { Bus } from "./bus.ts";
import type { Reading } from "./readings.ts";

const encoder = new TextEncoder();

/** The bus topic of a reading. */
export function readingTopic(r: Pick<Reading, "device_id" | "metric">): string {
  return `sensors/${r.device_id}/${r.metric}`;
}

/** The JSON payload of a reading on the bus. */
export function readingPayload(r: Reading): Uint8Array {
  return encoder.encode(JSON.stringify({
    device_id: r.device_id,
    metric: r.metric,
    value: r.value,
    timestamp: r.timestamp,
  }));
}

/** Publishes committed readings on the bus, in commit order; skips topics nobody wants. */
export function publishReadings(bus: Bus, rows: readonly Reading[]): void {
  if (bus.subscriptions === 0) return;
  for (const r of rows) {
    const topic = readingTopic(r);
    if (!bus.wants(topic)) continue;
    bus.publish(topic, readingPayload(r), "ingest");
  }
}
